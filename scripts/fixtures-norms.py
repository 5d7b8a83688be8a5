"""Writes test/fixtures/norms.json: PyTorch's F.layer_norm, F.group_norm and F.instance_norm,
forward and autograd backward in float64, for the tests of LayerNorm, GroupNorm and
InstanceNorm; and the modules nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d/2d ("modules":
train steps, running statistics, eval mode, state_dict) for the layers' tests. Run from the repository root with Debian's python3-torch (1.13):

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

# The layers (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d/2d), drawn after every case
# above so that those stay as they were. Data is stored in the case's layout ("NHWC": the
# channels-last order of the logical [N, C, H, W]); absent parameters and gradients are null.
def stored(t, layout):
    if layout in ("NHWC", "NLC"):
        return values(t.movedim(1, -1))
    return values(t)


def module_grads(module, x, dout):
    x = x.clone().requires_grad_(True)
    out = module(x)
    (out * dout).sum().backward()
    grad = lambda p: None if p is None else values(p.grad)
    return out, x.grad, grad(module.weight), grad(module.bias)


def rounded(t, dtype):
    return t.to(torch.float32 if dtype == "float32" else torch.float64).to(torch.float64)


def param(n, dtype, offset):
    return rounded(torch.rand(n, dtype=torch.float64) + offset, dtype)


modules = {"layer": [], "group": [], "instance": []}
for dtype in ["float64", "float32"]:
    # (normalized_shape, x shape, elementwise_affine, bias, loc)
    for (ns, shape, affine, bias, loc) in [((6,), (4, 6), True, True, 0), ((6, 4), (3, 6, 4), True, True, 0),
                                           ((5,), (2, 3, 5), False, False, 0), ((7,), (3, 7), True, False, 0.5),
                                           ((3, 2, 2), (2, 3, 2, 2), True, True, 1e4)]:
        x = rounded(torch.randn(*shape, dtype=torch.float64) + loc, dtype)
        dout = rounded(torch.randn(*shape, dtype=torch.float64), dtype)
        m = torch.nn.LayerNorm(ns, eps=1e-5, elementwise_affine=affine).double()
        if affine:
            with torch.no_grad():
                m.weight.copy_(param(m.weight.numel(), dtype, 0.5).reshape(ns))
                m.bias.copy_(rounded(torch.randn(m.bias.numel(), dtype=torch.float64), dtype).reshape(ns))
        if affine and not bias:
            # torch 1.13's nn.LayerNorm has no bias=False (2.1 added it): the same is F.layer_norm without bias.
            m.bias = None
        out, dx, dgamma, dbeta = module_grads(m, x, dout)
        modules["layer"].append({
            "name": f"LayerNorm({list(ns)}, elementwise_affine={affine}, bias={bias}) {dtype} x {list(shape)} mean {loc}",
            "dtype": dtype, "normalizedShape": list(ns), "elementwiseAffine": affine, "bias": bias, "shape": list(shape), "eps": 1e-5,
            "x": values(x), "weight": None if m.weight is None else values(m.weight), "bias_": None if m.bias is None else values(m.bias),
            "dout": values(dout), "out": values(out), "dx": values(dx), "dgamma": dgamma, "dbeta": dbeta,
        })
    for (G, shape, affine, layout, loc) in [(3, (2, 6, 3, 4), True, "NHWC", 0), (2, (2, 4, 5), True, "NLC", 0),
                                            (2, (3, 4, 2, 2), False, "NCHW", 0), (2, (5, 4), True, "NCHW", 0),
                                            (4, (2, 8, 3, 3), True, "NHWC", 1e4)]:
        C = shape[1]
        x = rounded(torch.randn(*shape, dtype=torch.float64) + loc, dtype)
        dout = rounded(torch.randn(*shape, dtype=torch.float64), dtype)
        m = torch.nn.GroupNorm(G, C, eps=1e-5, affine=affine).double()
        if affine:
            with torch.no_grad():
                m.weight.copy_(param(C, dtype, 0.5))
                m.bias.copy_(rounded(torch.randn(C, dtype=torch.float64), dtype))
        out, dx, dgamma, dbeta = module_grads(m, x, dout)
        modules["group"].append({
            "name": f"GroupNorm({G}, {C}, affine={affine}) {dtype} {layout} {list(shape)} mean {loc}",
            "dtype": dtype, "G": G, "affine": affine, "layout": layout, "shape": list(shape), "eps": 1e-5,
            "x": stored(x, layout), "weight": values(m.weight) if affine else None, "bias_": values(m.bias) if affine else None,
            "dout": stored(dout, layout), "out": stored(out, layout), "dx": stored(dx, layout), "dgamma": dgamma, "dbeta": dbeta,
        })
    # Two train steps (the first with a backward), then eval with the running statistics and its backward.
    for (shape, affine, track, momentum, layout, loc) in [((2, 3, 4, 5), True, True, 0.1, "NCHW", 0), ((3, 4, 7), False, True, 0.3, "NCL", 2),
                                                         ((2, 3, 3, 4), True, True, 0.2, "NHWC", 1e4), ((2, 3, 4, 4), True, False, 0.1, "NCHW", 0)]:
        C = shape[1]
        cls = torch.nn.InstanceNorm2d if len(shape) == 4 else torch.nn.InstanceNorm1d
        m = cls(C, eps=1e-5, momentum=momentum, affine=affine, track_running_stats=track).double()
        if affine:
            with torch.no_grad():
                m.weight.copy_(param(C, dtype, 0.5))
                m.bias.copy_(rounded(torch.randn(C, dtype=torch.float64), dtype))
        weight = values(m.weight) if affine else None
        bias_ = values(m.bias) if affine else None
        x = rounded(torch.randn(*shape, dtype=torch.float64) * 2 + loc, dtype)
        x2 = rounded(torch.randn(*shape, dtype=torch.float64) + loc, dtype)
        dout = rounded(torch.randn(*shape, dtype=torch.float64), dtype)
        m.train()
        out, dx, dgamma, dbeta = module_grads(m, x, dout)
        m.zero_grad()
        with torch.no_grad():
            out2 = m(x2)
        m.eval()
        x_eval = rounded(torch.randn(*shape, dtype=torch.float64) + loc, dtype)
        dout_eval = rounded(torch.randn(*shape, dtype=torch.float64), dtype)
        out_eval, dx_eval, dgamma_eval, dbeta_eval = module_grads(m, x_eval, dout_eval)
        state = {k: (int(v) if v.dim() == 0 else values(v)) for k, v in m.state_dict().items()}
        modules["instance"].append({
            "name": f"{cls.__name__}({C}, affine={affine}, track_running_stats={track}, momentum={momentum}) {dtype} {layout} {list(shape)} mean {loc}",
            "dtype": dtype, "affine": affine, "trackRunningStats": track, "momentum": momentum, "layout": layout, "shape": list(shape), "eps": 1e-5,
            "weight": weight, "bias_": bias_,
            "x": stored(x, layout), "dout": stored(dout, layout), "out": stored(out, layout), "dx": stored(dx, layout), "dgamma": dgamma, "dbeta": dbeta,
            "x2": stored(x2, layout), "out2": stored(out2, layout),
            "xEval": stored(x_eval, layout), "doutEval": stored(dout_eval, layout), "outEval": stored(out_eval, layout),
            "dxEval": stored(dx_eval, layout), "dgammaEval": dgamma_eval, "dbetaEval": dbeta_eval,
            "stateDict": state,
        })

with open("test/fixtures/norms.json", "w") as f:
    json.dump({"generator": "scripts/fixtures-norms.py, torch " + torch.__version__, "layer": layer, "group": group, "instance": instance,
               "modules": modules}, f)
    f.write("\n")
print(len(layer), len(group), len(instance), "cases;", {k: len(v) for k, v in modules.items()}, "layer cases")
