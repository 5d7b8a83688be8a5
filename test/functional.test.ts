// The functional API against float64 references computed by scripts/make_fixtures.py.
import { describe, expect, test } from "vitest";
import {
  type BNParam, type Backend, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync, spatialBatchnormForward, supportedBackends,
} from "../src/index.js";
import { type Layout } from "../src/shape.js";
import { engine } from "../src/wasm.js";
import { expectClose, expectDxClose, expectRelClose, fixtures, randn, tolerance, typed, unitRoundoff } from "./helpers.js";

const backends = supportedBackends() as Backend[];

test("this Node has every backend", () => {
  expect(backends).toEqual(["simd", "scalar", "js"]);
});

describe.each(backends)("%s backend", (backend) => {
  describe.each(fixtures.cases)("$name", (c) => {
    const tol = tolerance(c.dtype);
    const x = typed(c.dtype, c.x);
    const gamma = typed(c.dtype, c.gamma);
    const beta = typed(c.dtype, c.beta);

    test("train forward: out, batch mean and variance, running statistics", () => {
      initSync({ backend });
      const momentum = 0.8;
      const bnParam: BNParam = { mode: "train", eps: c.eps, momentum };
      const { out, cache } = batchnormForward(x, gamma, beta, bnParam);
      expect(out).toBeInstanceOf(x.constructor);
      expectClose(out, c.out, tol.abs, "out");
      expectRelClose(cache!.variance, c.var, tol.rel, "var");
      // mean is the batch mean rounded to the input's type; mean + meanLo carries it to the
      // accuracy x̂ needs, judged against the spread of the data.
      const std = Math.sqrt(Math.max(...c.var));
      const halfUlp = unitRoundoff(c.dtype) * Math.max(...c.mean.map(Math.abs));
      expectClose(cache!.mean, c.mean, halfUlp + tol.rel * std, "mean");
      const fullMean = Array.from(cache!.mean, (m, j) => m + cache!.meanLo[j]);
      expectClose(fullMean, c.mean, tol.rel * std, "mean + meanLo");
      // Created as zeros, then one update: (1 − momentum)·batch.
      expectRelClose(bnParam.runningMean!, c.mean.map((m) => (1 - momentum) * m), tol.rel, "runningMean");
      expectRelClose(bnParam.runningVar!, c.var.map((v) => (1 - momentum) * v), tol.rel, "runningVar");
    });

    test.each([
      ["graph form", batchnormBackward],
      ["compact form", batchnormBackwardAlt],
    ] as const)("backward, %s", (_, backwardFn) => {
      initSync({ backend });
      const { cache } = batchnormForward(x, gamma, beta, { mode: "train", eps: c.eps });
      const { dx, dgamma, dbeta } = backwardFn(typed(c.dtype, c.dout), cache!);
      expect(dx).toBeInstanceOf(x.constructor);
      expectDxClose(dx, c);
      expectRelClose(dgamma, c.dgamma, tol.rel, "dgamma");
      expectRelClose(dbeta, c.dbeta, tol.rel, "dbeta");
    });
  });

  describe.each(fixtures.sequences)("$name", (s) => {
    test("train steps then test mode reproduce the running statistics and the test output", () => {
      initSync({ backend });
      const tol = tolerance(s.dtype);
      const gamma = typed(s.dtype, s.gamma);
      const beta = typed(s.dtype, s.beta);
      const bnParam: Parameters<typeof batchnormForward>[3] = { mode: "train", eps: s.eps, momentum: s.momentum };
      for (const batch of s.batches) batchnormForward(typed(s.dtype, batch), gamma, beta, bnParam);
      expectRelClose(bnParam.runningMean!, s.runningMean, tol.rel, "runningMean");
      expectRelClose(bnParam.runningVar!, s.runningVar, tol.rel, "runningVar");
      bnParam.mode = "test";
      const before = Float64Array.from(bnParam.runningMean!);
      const { out, cache } = batchnormForward(typed(s.dtype, s.xTest), gamma, beta, bnParam);
      expect(cache).toBeNull();
      expectClose(out, s.outTest, tol.abs, "test-mode out");
      expect(Array.from(bnParam.runningMean!), "test mode does not update running statistics").toEqual(Array.from(before));
    });
  });

  // Test mode runs a large batch in parts of about 256 KiB (src/functional.ts): results must not
  // depend on where the parts end, and the engine's memory holds one part, not the batch.
  test.each([
    ["float32", [70001, 3], "NCHW"],
    ["float32", [200, 1024], "NCHW"],
    ["float64", [100, 1024], "NCHW"],
    ["float32", [10, 16, 40, 40], "NCHW"],
    ["float32", [3, 64, 40, 40], "NCHW"], // an item larger than a part: one item per part
    ["float32", [6, 16, 40, 40], "NHWC"],
  ] as const)("test mode in parts: %s %j %s matches the float64 formula", (dtype, shape, layout) => {
    initSync({ backend });
    const [N, C] = shape;
    const S = shape.slice(2).reduce((a, b) => a * b, 1);
    const x = typed(dtype, randn(7, N * C * S, 2, 3));
    const gamma = typed(dtype, randn(8, C, 1, 0.5));
    const beta = typed(dtype, randn(9, C));
    const runningMean = typed(dtype, randn(10, C, 2, 1));
    const runningVar = typed(dtype, randn(11, C, 0, 3).map((v) => v * v + 0.1));
    const param: BNParam = { mode: "test", runningMean, runningVar };
    const { out } = shape.length > 2
      ? spatialBatchnormForward(x, gamma, beta, param, [...shape], layout as Layout)
      : batchnormForward(x, gamma, beta, param);
    const channel = (i: number) => (layout === "NHWC" ? i % C : Math.floor(i / S) % C);
    const want = Array.from(x, (v, i) => {
      const c = channel(i);
      return ((v - runningMean[c]) * gamma[c]) / Math.sqrt(runningVar[c] + 1e-5) + beta[c];
    });
    expectClose(out, want, tolerance(dtype).abs * 4, "out");
  });

  // Large outputs come from memory that is not zeroed first (src/dtype.ts, unfilled): each must
  // still be a whole array of its own, every element written (checked against float64 here).
  test.each(["float32", "float64"] as const)("%s: large outputs own their whole buffer, every element written", (dtype) => {
    initSync({ backend });
    const [N, D] = [97, 1031];
    const x = typed(dtype, randn(13, N * D, 5, 2));
    const gamma = typed(dtype, randn(14, D, 1, 0.5));
    const beta = typed(dtype, randn(15, D));
    const dout = typed(dtype, randn(16, N * D));
    const param: BNParam = { mode: "train" };
    const { out, cache } = batchnormForward(x, gamma, beta, param);
    const { dx } = batchnormBackward(dout, cache!);
    const { out: testOut } = batchnormForward(x, gamma, beta, { ...param, mode: "test" });
    const want = { out: new Float64Array(N * D), dx: new Float64Array(N * D), testOut: new Float64Array(N * D) };
    for (let j = 0; j < D; j++) {
      const col = (a: ArrayLike<number>) => Array.from({ length: N }, (_, i) => a[i * D + j]);
      const sum = (v: number[]) => v.reduce((s, e) => s + e, 0);
      const xs = col(x);
      const mean = sum(xs) / N;
      const inv = 1 / Math.sqrt(sum(xs.map((v) => (v - mean) ** 2)) / N + 1e-5);
      const xHat = xs.map((v) => (v - mean) * inv);
      const dy = col(dout);
      const [dbeta, dgamma] = [sum(dy), sum(dy.map((g, i) => g * xHat[i]))];
      const testScale = gamma[j] / Math.sqrt(param.runningVar![j] + 1e-5);
      for (let i = 0; i < N; i++) {
        want.out[i * D + j] = gamma[j] * xHat[i] + beta[j];
        want.dx[i * D + j] = (gamma[j] * inv / N) * (N * dy[i] - dbeta - xHat[i] * dgamma);
        want.testOut[i * D + j] = (xs[i] - param.runningMean![j]) * testScale + beta[j];
      }
    }
    for (const [name, a] of Object.entries({ out, dx, testOut })) {
      expect([a.length, a.byteOffset, a.buffer.byteLength], name).toEqual([N * D, 0, a.byteLength]);
      expectClose(a, want[name as keyof typeof want], tolerance(dtype).abs * 4, name);
    }
  });

  test("test mode on a 64 MiB batch leaves the engine's memory under 16 MiB", () => {
    initSync({ backend });
    const D = 1024;
    const x = new Float32Array(16384 * D);
    x.set(randn(12, 1 << 16));
    const param: BNParam = { mode: "test", runningMean: new Float32Array(D), runningVar: new Float32Array(D).fill(1) };
    const { out } = batchnormForward(x, new Float32Array(D).fill(1), new Float32Array(D), param);
    expect(engine().heap.memory.buffer.byteLength).toBeLessThan(16 * 2 ** 20);
    const scale = 1 / Math.sqrt(1 + 1e-5);
    for (const i of [0, 65535, 65536, 8 * 2 ** 20 + 3, x.length - 1]) expect(out[i]).toBeCloseTo(x[i] * scale, 6);
  });
});

