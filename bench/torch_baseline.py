# PyTorch's batch norm as a baseline for bench/threads.mjs, timed on request so that the
# Node side can interleave its samples with the package's (one process, kept alive).
# Protocol, one line each way: "setup OP THREADS D0,D1[,...]" -> "ok CHECK_ERROR";
# "time REPS" -> ms per call; "quit". OP: train (F.batch_norm, training, under no_grad),
# test (eval), backward (aten.native_batch_norm_backward: what autograd calls, no forward).
# Run with Debian's python3-torch: /usr/bin/python3 bench/torch_baseline.py
import sys
import time

import torch
import torch.nn.functional as F

EPS = 1e-5
case = None


def setup(op, threads, shape):
    torch.set_num_threads(threads)
    if torch.get_num_threads() != threads:
        raise RuntimeError(f"torch runs {torch.get_num_threads()} threads, not {threads}")
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g) * 2 + 3).contiguous()
    dout = torch.randn(shape, generator=g)
    c = shape[1]
    w = torch.rand(c, generator=g) + 0.5
    b = torch.rand(c, generator=g) - 0.5
    rm, rv = torch.zeros(c), torch.ones(c)
    axes = [0] + list(range(2, len(shape)))
    view = [1, c] + [1] * (len(shape) - 2)
    # float64 statistics, for the check and for test mode's running statistics.
    mean64 = x.double().mean(axes)
    var64 = x.double().var(axes, unbiased=False)
    inv64 = 1 / torch.sqrt(var64 + EPS)
    xhat64 = (x.double() - mean64.view(view)) * inv64.view(view)
    with torch.no_grad():
        if op == "train":
            run = lambda: F.batch_norm(x, rm, rv, w, b, True, 0.1, EPS)
            want = xhat64 * w.double().view(view) + b.double().view(view)
        elif op == "test":
            rm, rv = mean64.float(), var64.float()
            run = lambda: F.batch_norm(x, rm, rv, w, b, False, 0.1, EPS)
            want = xhat64 * w.double().view(view) + b.double().view(view)
        elif op == "backward":
            _, save_mean, save_invstd = torch.native_batch_norm(x, w, b, rm, rv, True, 0.1, EPS)
            mask = [True, True, True]
            run = lambda: torch.ops.aten.native_batch_norm_backward(dout, x, w, rm, rv, save_mean, save_invstd, True, EPS, mask)[0]
            d = dout.double()
            m = x.numel() // c
            dbeta = d.sum(axes)
            dgamma = (d * xhat64).sum(axes)
            want = (w.double() * inv64).view(view) / m * (m * d - dbeta.view(view) - xhat64 * dgamma.view(view))
        else:
            raise ValueError(f"unknown op {op}")
        got = run().double()
    error = ((got - want).abs() / want.abs().clamp(min=1)).max().item()
    return run, error


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    if words[0] == "quit":
        break
    if words[0] == "setup":
        run, error = setup(words[1], int(words[2]), [int(v) for v in words[3].split(",")])
        case = run
        print(f"ok {error:.3e}", flush=True)
    elif words[0] == "time":
        reps = int(words[1])
        with torch.no_grad():
            t0 = time.perf_counter()
            for _ in range(reps):
                case()
            print(f"{(time.perf_counter() - t0) * 1e3 / reps:.6f}", flush=True)
    else:
        print(f"error unknown command {words[0]}", flush=True)
