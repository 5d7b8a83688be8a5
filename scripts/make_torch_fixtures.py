"""Fixtures from PyTorch itself (Debian's python3-torch, run with /usr/bin/python3) and, for
Keras' semantics, from numpy in float64. Run `npm run fixtures:torch` to regenerate
test/fixtures/pytorch.json; the tests read it on Node alone.

Each PyTorch case builds nn.BatchNorm1d/2d with given options and non-trivial weight and
bias, runs several train-mode steps (forward, then backward of sum(out * dout)), records
every output and gradient and the running statistics, then an eval-mode forward and
backward, and the final state_dict.
"""
import json
import numpy as np
import torch

torch.manual_seed(20261126)
rng = np.random.default_rng(7)


def tolist(t):
    return t.detach().numpy().astype(np.float64).ravel().tolist()


def torch_case(name, module, shape, steps, loc=1.5, scale=2.0):
    c = shape[1]
    with torch.no_grad():
        if module.affine:
            module.weight.copy_(torch.tensor(rng.normal(1.0, 0.5, c), dtype=torch.float32))
            module.bias.copy_(torch.tensor(rng.normal(0.0, 0.5, c), dtype=torch.float32))
    init = {k: tolist(v) if v.dim() else int(v) for k, v in module.state_dict().items()}
    record = {
        "name": name, "shape": list(shape), "eps": module.eps, "momentum": module.momentum,
        "affine": module.affine, "trackRunningStats": module.track_running_stats, "initialState": init, "steps": [],
    }
    module.train()
    for _ in range(steps):
        x = torch.tensor(rng.normal(loc, scale, shape), dtype=torch.float32, requires_grad=True)
        dout = torch.tensor(rng.normal(0.0, 1.0, shape), dtype=torch.float32)
        module.zero_grad()
        out = module(x)
        out.backward(dout)
        step = {"x": tolist(x), "dout": tolist(dout), "out": tolist(out), "dx": tolist(x.grad)}
        if module.affine:
            step["dweight"] = tolist(module.weight.grad)
            step["dbias"] = tolist(module.bias.grad)
        if module.track_running_stats:
            step["runningMean"] = tolist(module.running_mean)
            step["runningVar"] = tolist(module.running_var)
        record["steps"].append(step)
    module.eval()
    x = torch.tensor(rng.normal(loc, scale, shape), dtype=torch.float32, requires_grad=True)
    dout = torch.tensor(rng.normal(0.0, 1.0, shape), dtype=torch.float32)
    module.zero_grad()
    out = module(x)
    out.backward(dout)
    record["eval"] = {"x": tolist(x), "dout": tolist(dout), "out": tolist(out), "dx": tolist(x.grad)}
    if module.affine:
        record["eval"]["dweight"] = tolist(module.weight.grad)
        record["eval"]["dbias"] = tolist(module.bias.grad)
    record["finalState"] = {k: tolist(v) if v.dim() else int(v) for k, v in module.state_dict().items()}
    return record


def keras_case(name, shape_nhwc, steps, momentum=0.99, epsilon=1e-3):
    """Keras BatchNormalization (axis -1) in float64: moving = moving·momentum + batch·(1 − momentum)."""
    c = shape_nhwc[-1]
    gamma = rng.normal(1.0, 0.5, c)
    beta = rng.normal(0.0, 0.5, c)
    moving_mean = np.zeros(c)
    moving_var = np.ones(c)
    axes = tuple(range(len(shape_nhwc) - 1))
    record = {"name": name, "shape": list(shape_nhwc), "momentum": momentum, "epsilon": epsilon,
              "gamma": gamma.tolist(), "beta": beta.tolist(), "steps": []}
    for _ in range(steps):
        x = rng.normal(-2.0, 3.0, shape_nhwc).astype(np.float32).astype(np.float64)
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        out = gamma * (x - mean) / np.sqrt(var + epsilon) + beta
        moving_mean = moving_mean * momentum + mean * (1 - momentum)
        moving_var = moving_var * momentum + var * (1 - momentum)
        record["steps"].append({"x": x.ravel().tolist(), "out": out.ravel().tolist(),
                                "movingMean": moving_mean.tolist(), "movingVariance": moving_var.tolist()})
    x = rng.normal(-2.0, 3.0, shape_nhwc).astype(np.float32).astype(np.float64)
    record["eval"] = {"x": x.ravel().tolist(), "out": (gamma * (x - moving_mean) / np.sqrt(moving_var + epsilon) + beta).ravel().tolist()}
    return record


cases = [
    torch_case("BatchNorm1d (8, 5), momentum 0.1", torch.nn.BatchNorm1d(5), (8, 5), 3),
    torch_case("BatchNorm1d (6, 4), momentum None", torch.nn.BatchNorm1d(4, momentum=None), (6, 4), 4),
    torch_case("BatchNorm1d (7, 3), affine off", torch.nn.BatchNorm1d(3, affine=False), (7, 3), 2),
    torch_case("BatchNorm1d (9, 4), tracking off", torch.nn.BatchNorm1d(4, track_running_stats=False), (9, 4), 2),
    torch_case("BatchNorm1d (4, 3, 7), momentum 0.2", torch.nn.BatchNorm1d(3, momentum=0.2), (4, 3, 7), 3),
    torch_case("BatchNorm2d (4, 3, 5, 6), momentum 0.1", torch.nn.BatchNorm2d(3), (4, 3, 5, 6), 3),
    torch_case("BatchNorm2d (2, 6, 9, 9), eps 1e-3, momentum None", torch.nn.BatchNorm2d(6, eps=1e-3, momentum=None), (2, 6, 9, 9), 3),
]
keras = [keras_case("Keras (4, 3, 5, 6) channels last", (4, 3, 5, 6), 3), keras_case("Keras (10, 7)", (10, 7), 4, momentum=0.9)]

with open("test/fixtures/pytorch.json", "w") as f:
    json.dump({"generator": "scripts/make_torch_fixtures.py", "torch": torch.__version__, "cases": cases, "keras": keras}, f)
print(f"test/fixtures/pytorch.json: {len(cases)} PyTorch cases (torch {torch.__version__}), {len(keras)} Keras cases")
