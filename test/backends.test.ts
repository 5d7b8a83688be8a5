// The SIMD build, the scalar build and the plain-JS backend (an independent algorithm: two
// passes in float64) agree within the core tolerances on every shape of the sweep.
import { describe, expect, test } from "vitest";
import type { Dtype, FloatArray } from "../src/dtype.js";
import {
  type BNParam, type Backend, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync, spatialBatchnormBackward, spatialBatchnormForward,
} from "../src/index.js";
import { expectClose, expectDxClose, expectRelClose, maxAbs, randn, tolerance, typed } from "./helpers.js";

const Ds = [1, 2, 3, 4, 5, 7, 8, 67, 1024, 1031];
const Ns = [1, 2, 3, 64, 1000];

function runAll(backend: Backend, x: FloatArray, gamma: FloatArray, beta: FloatArray, dout: FloatArray) {
  initSync({ backend });
  const bnParam: BNParam = { mode: "train", momentum: 0.7 };
  const train = batchnormForward(x, gamma, beta, bnParam);
  const test = batchnormForward(x, gamma, beta, { ...bnParam, mode: "test" });
  return {
    out: train.out, mean: train.cache!.mean, variance: train.cache!.variance,
    runningMean: bnParam.runningMean!, runningVar: bnParam.runningVar!, testOut: test.out,
    graph: batchnormBackward(dout, train.cache!), compact: batchnormBackwardAlt(dout, train.cache!),
  };
}

describe.each(["float32", "float64"] as Dtype[])("%s", (dtype) => {
  describe.each(Ds)("D = %i", (d) => {
    test.each(Ns)("N = %i", (n) => {
      const seed = n * 7919 + d;
      const x = typed(dtype, randn(seed, n * d, 5, 2));
      const gamma = typed(dtype, randn(seed + 1, d, 1, 0.5));
      const beta = typed(dtype, randn(seed + 2, d));
      const dout = typed(dtype, randn(seed + 3, n * d));
      const simd = runAll("simd", x, gamma, beta, dout);
      const scalar = runAll("scalar", x, gamma, beta, dout);
      const js = runAll("js", x, gamma, beta, dout);

      const tol = tolerance(dtype);
      for (const [name, wasm] of [["simd", simd], ["scalar", scalar]] as const) {
        expectClose(wasm.out, js.out, tol.abs, `${name} out`);
        // Test-mode outputs are not unit-scale here (one step of running statistics).
        expectClose(wasm.testOut, js.testOut, tol.abs * Math.max(1, maxAbs(js.testOut)), `${name} test-mode out`);
        expectRelClose(wasm.variance, js.variance, tol.rel, `${name} variance`);
        expectRelClose(wasm.runningVar, js.runningVar, tol.rel, `${name} runningVar`);
        expectClose(wasm.mean, js.mean, tol.rel * Math.max(1, maxAbs(js.variance)) + 5 * 2 ** -24, `${name} mean`);
        const c = { dtype, n, d, eps: 1e-5, gamma: Array.from(gamma), var: Array.from(js.variance), dout: Array.from(dout) };
        for (const form of ["graph", "compact"] as const) {
          expectDxClose(wasm[form].dx, { ...c, dx: Array.from(js[form].dx) });
          expectRelClose(wasm[form].dgamma, js[form].dgamma, tol.rel, `${name} ${form} dgamma`);
          expectRelClose(wasm[form].dbeta, js[form].dbeta, tol.rel, `${name} ${form} dbeta`);
        }
      }
    });
  });
});

describe.each(["float32", "float64"] as Dtype[])("%s spatial", (dtype) => {
  const shapes = [[3, 5, 7], [2, 3, 5, 7], [4, 2, 33, 1], [1, 4, 16], [5, 1, 3, 3], [2, 6, 9, 11]];
  describe.each(["NCHW", "NHWC"] as const)("%s", (layout) => {
    test.each(shapes)("shape [%i, %i, …]", (...shape) => {
      const [, c] = shape;
      const size = shape.reduce((a, b) => a * b, 1);
      const seed = size * 31 + c;
      const x = typed(dtype, randn(seed, size, -4, 3));
      const gamma = typed(dtype, randn(seed + 1, c, 1, 0.5));
      const beta = typed(dtype, randn(seed + 2, c));
      const dout = typed(dtype, randn(seed + 3, size));
      const run = (backend: Backend) => {
        initSync({ backend });
        const bnParam: BNParam = { mode: "train", momentum: 0.6 };
        const { out, cache } = spatialBatchnormForward(x, gamma, beta, bnParam, shape, layout);
        const test = spatialBatchnormForward(x, gamma, beta, { ...bnParam, mode: "test" }, shape, layout).out;
        return { out, test, variance: cache!.variance, runningVar: bnParam.runningVar!, ...spatialBatchnormBackward(dout, cache!) };
      };
      const js = run("js");
      const tol = tolerance(dtype);
      for (const backend of ["simd", "scalar"] as const) {
        const r = run(backend);
        expectClose(r.out, js.out, tol.abs, `${backend} out`);
        expectClose(r.test, js.test, tol.abs * Math.max(1, maxAbs(js.test)), `${backend} test out`);
        expectRelClose(r.variance, js.variance, tol.rel, `${backend} variance`);
        expectRelClose(r.runningVar, js.runningVar, tol.rel, `${backend} runningVar`);
        expectRelClose(r.dx, js.dx, tol.rel, `${backend} dx`);
        expectRelClose(r.dgamma, js.dgamma, tol.rel, `${backend} dgamma`);
        expectRelClose(r.dbeta, js.dbeta, tol.rel, `${backend} dbeta`);
      }
    });
  });
});

// Inputs of 8 MiB and more take the streaming kernels (assembly/columns.ts streams()).
describe.each([
  ["float32", 2048, 1024],
  ["float64", 1024, 1024],
  ["float32", 8192, 260],
  // Rows of 8 KiB and more stream four at a time, a quarter of the batch apart; N = 4k + 1 leaves one.
  ["float32", 1025, 2048],
  ["float64", 513, 2048],
] as [Dtype, number, number][])("%s (%i, %i): streamed through memory", (dtype, n, d) => {
  test("SIMD and scalar agree with the plain-JS backend", () => {
    const x = typed(dtype, randn(n + d, n * d, 100, 3));
    const gamma = typed(dtype, randn(n + d + 1, d, 1, 0.5));
    const beta = typed(dtype, randn(n + d + 2, d));
    const dout = typed(dtype, randn(n + d + 3, n * d));
    const js = runAll("js", x, gamma, beta, dout);
    const tol = tolerance(dtype);
    for (const backend of ["simd", "scalar"] as const) {
      const r = runAll(backend, x, gamma, beta, dout);
      expectClose(r.out, js.out, tol.abs, `${backend} out`);
      expectClose(r.testOut, js.testOut, tol.abs * Math.max(1, maxAbs(js.testOut)), `${backend} test-mode out`);
      expectRelClose(r.variance, js.variance, tol.rel, `${backend} variance`);
      for (const form of ["graph", "compact"] as const) {
        expectRelClose(r[form].dx, js[form].dx, tol.rel, `${backend} ${form} dx`);
        expectRelClose(r[form].dgamma, js[form].dgamma, tol.rel, `${backend} ${form} dgamma`);
        expectRelClose(r[form].dbeta, js[form].dbeta, tol.rel, `${backend} ${form} dbeta`);
      }
    }
  });
});

describe.each(["float32", "float64"] as Dtype[])("%s, gamma with zeros", (dtype) => {
  test("dx is exactly 0 in the columns whose gamma is 0, and agrees elsewhere, both forms", () => {
    const n = 64;
    const d = 8;
    const x = typed(dtype, randn(17, n * d, 3, 2));
    const gamma = typed(dtype, [0, 1.5, 0, 0, -2, 0.5, 0, 3]);
    const beta = typed(dtype, randn(18, d));
    const dout = typed(dtype, randn(19, n * d));
    const js = runAll("js", x, gamma, beta, dout);
    const tol = tolerance(dtype);
    for (const backend of ["simd", "scalar"] as const) {
      const wasm = runAll(backend, x, gamma, beta, dout);
      for (const form of ["graph", "compact"] as const) {
        wasm[form].dx.forEach((v, i) => {
          if (gamma[i % d] === 0) expect(v === 0, `${backend} ${form} dx[${i}] = ${v}`).toBe(true);
        });
        const c = { dtype, n, d, eps: 1e-5, gamma: Array.from(gamma), var: Array.from(js.variance), dout: Array.from(dout) };
        expectDxClose(wasm[form].dx, { ...c, dx: Array.from(js[form].dx) });
        expectRelClose(wasm[form].dgamma, js[form].dgamma, tol.rel, `${backend} ${form} dgamma`);
      }
    }
  });
});
