"""Reference values for the tests, computed outside the package in float64 with exactly
rounded sums (math.fsum) and x − mean from the exact mean (fractions), so that a mean far
above the spread costs no accuracy: the float64 mean alone is off by up to half its ulp, 3e-9
of a std at mean -3e5, std 0.01. Run `npm run fixtures` to regenerate
test/fixtures/reference.json.

Each case gives inputs (float32 cases: values exactly representable in float32) and the
CS231n batch-norm results: train-mode out, batch mean and var, dx/dgamma/dbeta for a given
dout, and, for the sequence cases, the running statistics after several train steps and a
test-mode output.
"""
import json
import math
from fractions import Fraction
import numpy as np

rng = np.random.default_rng(20261126)


def column_sum(a):
    return np.array([math.fsum(a[:, j]) for j in range(a.shape[1])])


def centred(x):
    """The column means, and x − mean correctly rounded from the exact mean."""
    n = x.shape[0]
    exact = [sum(map(Fraction, x[:, j]), Fraction(0)) / n for j in range(x.shape[1])]
    xc = np.array([[float(Fraction(v) - exact[j]) for j, v in enumerate(row)] for row in x])
    return np.array([float(m) for m in exact]), xc


def forward_train(x, gamma, beta, eps):
    n = x.shape[0]
    mean, xc = centred(x)
    var = column_sum(xc * xc) / n
    inv = 1.0 / np.sqrt(var + eps)
    xhat = xc * inv
    return gamma * xhat + beta, mean, var, xhat, inv


def backward(dout, xhat, gamma, inv):
    n = dout.shape[0]
    dbeta = column_sum(dout)
    dgamma = column_sum(dout * xhat)
    dx = (gamma * inv / n) * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def as_dtype(a, dtype):
    return np.asarray(a, dtype=dtype).astype(np.float64)


def case(name, dtype, n, d, loc=0.0, scale=1.0, eps=1e-5, sort=False):
    x = as_dtype(rng.normal(loc, scale, size=(n, d)), dtype)
    if sort:
        x = np.sort(x, axis=0)
    gamma = as_dtype(rng.normal(1.0, 0.5, size=d), dtype)
    beta = as_dtype(rng.normal(0.0, 0.5, size=d), dtype)
    dout = as_dtype(rng.normal(0.0, 1.0, size=(n, d)), dtype)
    out, mean, var, xhat, inv = forward_train(x, gamma, beta, eps)
    dx, dgamma, dbeta = backward(dout, xhat, gamma, inv)
    return {
        "name": name, "dtype": dtype, "n": n, "d": d, "eps": eps,
        "x": x.ravel().tolist(), "gamma": gamma.tolist(), "beta": beta.tolist(), "dout": dout.ravel().tolist(),
        "out": out.ravel().tolist(), "mean": mean.tolist(), "var": var.tolist(),
        "dx": dx.ravel().tolist(), "dgamma": dgamma.tolist(), "dbeta": dbeta.tolist(),
    }


def sequence(name, dtype, n, d, steps, momentum, eps=1e-5):
    """Train steps on different batches from zero running statistics, then test mode."""
    gamma = as_dtype(rng.normal(1.0, 0.5, size=d), dtype)
    beta = as_dtype(rng.normal(0.0, 0.5, size=d), dtype)
    loc = rng.normal(3.0, 2.0, size=d)
    scale = rng.uniform(0.5, 3.0, size=d)
    running_mean = np.zeros(d)
    running_var = np.zeros(d)
    batches = []
    for _ in range(steps):
        x = as_dtype(rng.normal(loc, scale, size=(n, d)), dtype)
        _, mean, var, _, _ = forward_train(x, gamma, beta, eps)
        # Rounded to the working type after every step, as the package stores them.
        running_mean = as_dtype(momentum * running_mean + (1 - momentum) * mean, dtype)
        running_var = as_dtype(momentum * running_var + (1 - momentum) * var, dtype)
        batches.append(x.ravel().tolist())
    x_test = as_dtype(rng.normal(loc, scale, size=(n, d)), dtype)
    out_test = (x_test - running_mean) * gamma / np.sqrt(running_var + eps) + beta
    return {
        "name": name, "dtype": dtype, "n": n, "d": d, "eps": eps, "momentum": momentum,
        "gamma": gamma.tolist(), "beta": beta.tolist(), "batches": batches,
        "runningMean": running_mean.tolist(), "runningVar": running_var.tolist(),
        "xTest": x_test.ravel().tolist(), "outTest": out_test.ravel().tolist(),
    }


cases = []
for dtype in ("float32", "float64"):
    cases += [
        case(f"{dtype} 1x3 (one row)", dtype, 1, 3),
        case(f"{dtype} 2x1", dtype, 2, 1),
        case(f"{dtype} 4x5", dtype, 4, 5, loc=2.0, scale=3.0),
        case(f"{dtype} 64x67", dtype, 64, 67, loc=-1.0, scale=0.5),
        case(f"{dtype} 17x8 eps 0.1", dtype, 17, 8, eps=0.1),
        case(f"{dtype} 1000x5 mean 1e4 std 1", dtype, 1000, 5, loc=1e4, scale=1.0),
        case(f"{dtype} 300x7 mean 1e4 std 1, columns sorted", dtype, 300, 7, loc=1e4, scale=1.0, sort=True),
        case(f"{dtype} 50x6 mean -3e5 std 0.01", dtype, 50, 6, loc=-3e5, scale=0.01),
    ]
sequences = [
    sequence("float32 5 steps of 32x9, momentum 0.9", "float32", 32, 9, 5, 0.9),
    sequence("float64 7 steps of 20x4, momentum 0.7", "float64", 20, 4, 7, 0.7),
]

with open("test/fixtures/reference.json", "w") as f:
    json.dump({"generator": "scripts/make_fixtures.py", "cases": cases, "sequences": sequences}, f)
print(f"test/fixtures/reference.json: {len(cases)} cases, {len(sequences)} sequences")
