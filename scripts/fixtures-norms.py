"""Writes test/fixtures/norms.json: PyTorch's F.layer_norm, F.group_norm and F.instance_norm,
forward and autograd backward in float64, for the tests of LayerNorm, GroupNorm and
InstanceNorm. Run from the repository root with Debian's python3-torch (1.13):

    /usr/bin/python3 scripts/fixtures-norms.py

float32 cases hold inputs rounded to float32; their expected values are still computed in
float64 (the tests compare float32 results with tolerances)."""
import json

import torch
import torch.nn.functional as F

torch.manual_seed(19)


def values(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def inputs(shape, channels, dtype, loc=0.0, scale=1.0):
    rounded = torch.float32 if dtype == "float32" else torch.float64
    x = (torch.randn(*shape, dtype=torch.float64) * scale + loc).to(rounded).to(torch.float64)
    gamma = (torch.rand(channels, dtype=torch.float64) + 0.5).to(rounded).to(torch.float64)
    beta = torch.randn(channels, dtype=torch.float64).to(rounded).to(torch.float64)
    dout = torch.randn(*shape, dtype=torch.float64).to(rounded).to(torch.float64)
    return x, gamma, beta, dout


def backward(fn, x, gamma, beta, dout):
    x = x.clone().requires_grad_(True)
    gamma = gamma.clone().requires_grad_(True)
    beta = beta.clone().requires_grad_(True)
    out = fn(x, gamma, beta)
    (out * dout).sum().backward()
    return out, x.grad, gamma.grad, beta.grad


def case(name, dtype, shape, eps, x, gamma, beta, dout, out, dx, dgamma, dbeta, **extra):
    return {
        "name": name, "dtype": dtype, "shape": list(shape), "eps": eps,
        "x": values(x), "gamma": values(gamma), "beta": values(beta), "dout": values(dout),
        "out": values(out), "dx": values(dx), "dgamma": values(dgamma), "dbeta": values(dbeta), **extra,
    }


layer = []
for dtype in ["float64", "float32"]:
    for (n, d, loc, scale, eps) in [(4, 1, 0, 1, 1e-5), (3, 3, 0, 1, 1e-5), (5, 5, 0.5, 2, 1e-3), (2, 1031, 0, 1, 1e-5),
                                    (6, 16, 0, 1, 1e-5), (8, 64, 1e4, 1, 1e-5), (3, 37, -3, 0.01, 1e-5)]:
        x, gamma, beta, dout = inputs((n, d), d, dtype, loc, scale)
        out, dx, dgamma, dbeta = backward(lambda a, g, b: F.layer_norm(a, (d,), g, b, eps), x, gamma, beta, dout)
        layer.append(case(f"layer_norm {dtype} ({n}, {d}) mean {loc} std {scale}", dtype, (n, d), eps, x, gamma, beta, dout, out, dx, dgamma, dbeta))

group = []
for dtype in ["float64", "float32"]:
    for (shape, G, loc, scale, eps) in [((2, 6, 3, 4), 3, 0, 1, 1e-5), ((2, 4, 5), 2, 0, 1, 1e-5), ((3, 8, 2, 2), 8, 0, 1, 1e-5),
                                        ((2, 5, 7), 1, 0, 1, 1e-5), ((2, 6, 4, 4), 2, 0, 1, 1e-3), ((2, 10, 3), 2, 0, 1, 1e-5),
                                        ((1, 2, 1031), 2, 0, 1, 1e-5), ((2, 4, 8, 8), 2, 1e4, 1, 1e-5), ((2, 6, 1, 1), 3, 0, 1, 1e-5)]:
        C = shape[1]
        x, gamma, beta, dout = inputs(shape, C, dtype, loc, scale)
        out, dx, dgamma, dbeta = backward(lambda a, g, b: F.group_norm(a, G, g, b, eps), x, gamma, beta, dout)
        group.append(case(f"group_norm {dtype} {list(shape)} G = {G} mean {loc}", dtype, shape, eps, x, gamma, beta, dout, out, dx, dgamma, dbeta, G=G))

instance = []
for dtype in ["float64", "float32"]:
    for (shape, loc, eps, momentum) in [((2, 3, 4, 5), 0, 1e-5, 0.1), ((3, 4, 7), 2, 1e-5, 0.1), ((2, 3, 6, 6), 1e4, 1e-5, 0.3)]:
        C = shape[1]
        x, gamma, beta, dout = inputs(shape, C, dtype, loc)
        out, dx, dgamma, dbeta = backward(lambda a, g, b: F.instance_norm(a, weight=g, bias=b, eps=eps), x, gamma, beta, dout)
        # Running statistics (track_running_stats=True): one train step from the defaults, then eval.
        running_mean = torch.zeros(C, dtype=torch.float64)
        running_var = torch.ones(C, dtype=torch.float64)
        F.instance_norm(x, running_mean, running_var, gamma, beta, use_input_stats=True, momentum=momentum, eps=eps)
        x_eval, _, _, _ = inputs(shape, C, dtype, loc)
        out_eval = F.instance_norm(x_eval, running_mean, running_var, gamma, beta, use_input_stats=False, momentum=momentum, eps=eps)
        instance.append(case(
            f"instance_norm {dtype} {list(shape)} mean {loc}", dtype, shape, eps, x, gamma, beta, dout, out, dx, dgamma, dbeta,
            momentum=momentum, runningMean=values(running_mean), runningVar=values(running_var), xEval=values(x_eval), outEval=values(out_eval),
        ))

with open("test/fixtures/norms.json", "w") as f:
    json.dump({"generator": "scripts/fixtures-norms.py, torch " + torch.__version__, "layer": layer, "group": group, "instance": instance}, f)
    f.write("\n")
print(len(layer), len(group), len(instance), "cases")
