"""Fixtures for foldBatchNorm from PyTorch itself (Debian's python3-torch, 1.13, run with
/usr/bin/python3): `/usr/bin/python3 scripts/make_fold_fixtures.py` writes
test/fixtures/fold.json.

Each case is a Linear, Conv1d/2d/3d or ConvTranspose2d followed by a BatchNorm1d/2d/3d in
eval mode, in float64, with random weights, bias (or none), gamma, beta and running
statistics. It records PyTorch's folded weight and bias (torch.nn.utils.fusion's
fuse_linear_bn_eval, and fuse_conv_bn_eval, with transpose=True for the transposed
convolution), and an input x with bn(layer(x)) so that a test can run the folded layer too.
Arrays are flattened row-major in PyTorch's order; shapes are given beside them.
"""
import json
import os

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

torch.manual_seed(20)
rng = np.random.default_rng(20)


def flat(t):
    return t.detach().to(torch.float64).numpy().ravel().tolist()


def randomize(layer, bn):
    """Random weight and bias, gamma and beta, and running statistics (variance > 0)."""
    c = bn.num_features
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(rng.normal(0.0, 0.5, tuple(layer.weight.shape))))
        if layer.bias is not None:
            layer.bias.copy_(torch.tensor(rng.normal(0.0, 1.0, c)))
        if bn.affine:
            bn.weight.copy_(torch.tensor(rng.normal(1.0, 0.5, c)))
            bn.bias.copy_(torch.tensor(rng.normal(0.0, 0.5, c)))
        bn.running_mean.copy_(torch.tensor(rng.normal(0.5, 1.0, c)))
        bn.running_var.copy_(torch.tensor(rng.uniform(0.2, 3.0, c)))


def case(name, kind, layer, bn, x_shape, fuse, config):
    layer = layer.double().eval()
    bn = bn.double().eval()
    randomize(layer, bn)
    fused = fuse(layer, bn)
    x = torch.tensor(rng.normal(0.0, 1.0, x_shape))
    with torch.no_grad():
        y = bn(layer(x))
    return {
        "name": name,
        "kind": kind,
        "config": config,
        "weightShape": list(layer.weight.shape),
        "weight": flat(layer.weight),
        "bias": None if layer.bias is None else flat(layer.bias),
        "bn": {
            "gamma": flat(bn.weight) if bn.affine else None,
            "beta": flat(bn.bias) if bn.affine else None,
            "runningMean": flat(bn.running_mean),
            "runningVar": flat(bn.running_var),
            "eps": bn.eps,
        },
        "fusedWeight": flat(fused.weight),
        "fusedBias": flat(fused.bias),
        "xShape": list(x_shape),
        "x": flat(x),
        "yShape": list(y.shape),
        "y": flat(y),
    }


def conv(layer, bn):
    return fuse_conv_bn_eval(layer, bn)


def conv_transpose(layer, bn):
    return fuse_conv_bn_eval(layer, bn, transpose=True)


def conv_config(layer):
    return {"stride": list(layer.stride), "padding": list(layer.padding), "groups": layer.groups}


cases = []
lin = nn.Linear(5, 4)
cases.append(case("linear (4, 5) with bias", "linear", lin, nn.BatchNorm1d(4), (3, 5), fuse_linear_bn_eval, {}))
lin = nn.Linear(3, 6, bias=False)
cases.append(case("linear (6, 3) without bias, eps 1e-3", "linear", lin, nn.BatchNorm1d(6, eps=1e-3), (2, 3), fuse_linear_bn_eval, {}))
c = nn.Conv2d(3, 4, 3, padding=1)
cases.append(case("conv2d (4, 3, 3, 3) padding 1", "conv", c, nn.BatchNorm2d(4), (2, 3, 5, 4), conv, conv_config(c)))
c = nn.Conv2d(4, 6, (2, 3), stride=2, groups=2, bias=False)
cases.append(case("conv2d (6, 2, 2, 3) groups 2 stride 2 without bias", "conv", c, nn.BatchNorm2d(6), (1, 4, 6, 7), conv, conv_config(c)))
c = nn.Conv1d(2, 5, 3)
cases.append(case("conv1d (5, 2, 3), batch norm without affine", "conv", c, nn.BatchNorm1d(5, affine=False), (2, 2, 7), conv, conv_config(c)))
c = nn.Conv3d(2, 3, 2, padding=1)
cases.append(case("conv3d (3, 2, 2, 2, 2) padding 1", "conv", c, nn.BatchNorm3d(3), (1, 2, 3, 3, 2), conv, conv_config(c)))
c = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1)
cases.append(case("convTranspose2d (3, 4, 3, 3) stride 2 padding 1", "convTranspose", c, nn.BatchNorm2d(4), (2, 3, 3, 4), conv_transpose, conv_config(c)))
c = nn.ConvTranspose2d(2, 3, (2, 3), bias=False)
cases.append(case("convTranspose2d (2, 3, 2, 3) without bias", "convTranspose", c, nn.BatchNorm2d(3, eps=1e-3), (1, 2, 3, 3), conv_transpose, conv_config(c)))

out = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "fold.json")
with open(out, "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f, separators=(",", ":"))
    f.write("\n")
print(f"wrote {len(cases)} cases to {os.path.normpath(out)}")
