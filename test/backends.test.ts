// The SIMD and scalar builds agree bit for bit (same arithmetic per column); the plain-JS
// backend, an independent algorithm, agrees within the core tolerances.
import { describe, expect, test } from "vitest";
import type { Dtype, FloatArray } from "../src/dtype.js";
import { type BNParam, type Backend, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync } from "../src/index.js";
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

/** Every array in a and b holds the same bytes. */
function expectBitIdentical(a: object, b: object, path = "") {
  for (const [key, value] of Object.entries(a)) {
    const other = (b as Record<string, unknown>)[key];
    if (ArrayBuffer.isView(value)) {
      const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      const otherBytes = new Uint8Array((other as FloatArray).buffer, (other as FloatArray).byteOffset, (other as FloatArray).byteLength);
      expect(Buffer.compare(bytes, otherBytes), `${path}${key} differs`).toBe(0);
    } else expectBitIdentical(value, other as object, `${path}${key}.`);
  }
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

      expectBitIdentical(scalar, simd);

      const tol = tolerance(dtype);
      expectClose(simd.out, js.out, tol.abs, "out");
      // Test-mode outputs are not unit-scale here (one step of running statistics).
      expectClose(simd.testOut, js.testOut, tol.abs * Math.max(1, maxAbs(js.testOut)), "test-mode out");
      expectRelClose(simd.variance, js.variance, tol.rel, "variance");
      expectRelClose(simd.runningVar, js.runningVar, tol.rel, "runningVar");
      expectClose(simd.mean, js.mean, tol.rel * Math.max(1, maxAbs(simd.variance)) + 1e-6 * 5, "mean");
      const c = { dtype, n, d, eps: 1e-5, gamma: Array.from(gamma), var: Array.from(js.variance), dout: Array.from(dout) };
      for (const form of ["graph", "compact"] as const) {
        expectDxClose(simd[form].dx, { ...c, dx: Array.from(js[form].dx) });
        expectRelClose(simd[form].dgamma, js[form].dgamma, tol.rel, `${form} dgamma`);
        expectRelClose(simd[form].dbeta, js[form].dbeta, tol.rel, `${form} dbeta`);
      }
      expectDxClose(simd.graph.dx, { ...c, dx: Array.from(simd.compact.dx) });
    });
  });
});
