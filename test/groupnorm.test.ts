// GroupNorm (spatialGroupnormForward / spatialGroupnormBackward) against PyTorch's
// F.group_norm and its autograd (test/fixtures/norms.json), NCHW and NHWC, finite
// differences, the backends against each other, and the errors.
import { describe, expect, test } from "vitest";
import type { Dtype } from "../src/dtype.js";
import { type Backend, initSync, spatialGroupnormBackward, spatialGroupnormForward } from "../src/index.js";
import { expectClose, maxAbs, numericGradient, randn, relError, tolerance, typed } from "./helpers.js";
import { expectBackendsAgree, expectGradClose, groupTerms, normFixtures, toChannelsLast } from "./norms-helpers.js";

const BACKENDS: Backend[] = ["simd", "scalar", "js"];

/** groupTerms with the channel count C: G groups of C/G channels. */
const terms = (x: ArrayLike<number>, gamma: ArrayLike<number>, dout: ArrayLike<number>, N: number, C: number, S: number, G: number, eps: number) =>
  groupTerms(x, gamma, dout, N, G, C / G, S, eps);

describe.each(BACKENDS)("%s backend", (backend) => {
  describe.each(["NCHW", "NHWC"] as const)("%s", (layout) => {
    test.each(normFixtures.group.map((c) => [c.name, c] as const))("PyTorch %s", (_, c) => {
      initSync({ backend });
      const [N, C] = c.shape;
      const S = c.shape.slice(2).reduce((a, b) => a * b, 1);
      const last = layout === "NHWC";
      const stored = (a: number[]) => typed(c.dtype, last ? toChannelsLast(a, N, C, S) : a);
      const x = stored(c.x);
      const dout = stored(c.dout);
      const gamma = typed(c.dtype, c.gamma);
      const beta = typed(c.dtype, c.beta);
      const { out, cache } = spatialGroupnormForward(x, gamma, beta, c.G!, { eps: c.eps }, c.shape, layout);
      const tol = tolerance(c.dtype);
      expectClose(out, stored(c.out), tol.abs * Math.max(1, maxAbs(c.out)), "out");
      expect(cache.mean.length).toBe(N * c.G!);
      const grads = spatialGroupnormBackward(dout, cache);
      const t = terms(c.x, c.gamma, c.dout, N, C, S, c.G!, c.eps);
      expectGradClose(c.dtype, grads.dx, stored(c.dx), t.dx, "dx");
      expectGradClose(c.dtype, grads.dgamma, c.dgamma, t.dgamma, "dgamma");
      expectGradClose(c.dtype, grads.dbeta, c.dbeta, t.dbeta, "dbeta");
    });
  });

  test.each(["NCHW", "NHWC"] as const)("float64 finite differences, %s", (layout) => {
    initSync({ backend });
    const shape = [2, 6, 3, 2];
    const size = 72;
    const x = randn(11, size, -1, 2);
    const gamma = randn(12, 6, 1, 0.5);
    const beta = randn(13, 6);
    const dout = randn(14, size);
    const f = () => spatialGroupnormForward(x, gamma, beta, 3, { eps: 1e-5 }, shape, layout).out;
    const grads = spatialGroupnormBackward(dout, spatialGroupnormForward(x, gamma, beta, 3, undefined, shape, layout).cache);
    expect(relError(grads.dx, numericGradient(f, dout, x))).toBeLessThan(1e-7);
    expect(relError(grads.dgamma, numericGradient(f, dout, gamma))).toBeLessThan(1e-7);
    expect(relError(grads.dbeta, numericGradient(f, dout, beta))).toBeLessThan(1e-7);
  });
});

describe.each(["float32", "float64"] as Dtype[])("%s: the backends agree", (dtype) => {
  // [N, C, S, G]: C/G = 1, 3, 5, 1031, runs S = 1 to 33, channels-last items of many
  // E-long groups with a tail (C = 3, 5, 64, 1031 channels per position), and batches in parts.
  describe.each(["NCHW", "NHWC"] as const)("%s", (layout) => {
    test.each([
      [2, 6, 5, 2], [2, 5, 7, 1], [3, 4, 9, 4], [1, 1031, 2, 1], [2, 8, 1, 2], [2, 4, 33, 2], [4, 32, 16, 8],
      [1, 3, 1001, 1], [3, 5, 17, 5], [2, 64, 301, 32], [2, 1031, 3, 1031],
      // Larger batches: 128 Ki values, one and several items.
      [1, 16, 8192, 8], [3, 6, 4096, 3],
    ])("[%i, %i, %i] G = %i", (N, C, S, G) => {
      const seed = N * 1000 + C * 10 + S;
      const size = N * C * S;
      const x = randn(seed, size, 3, 2);
      const gamma = typed(dtype, randn(seed + 1, C, 1, 0.5));
      const beta = typed(dtype, randn(seed + 2, C));
      const dout = randn(seed + 3, size);
      const stored = (a: ArrayLike<number>) => typed(dtype, layout === "NHWC" ? toChannelsLast(a, N, C, S) : Array.from(a));
      const run = (backend: Backend) => {
        initSync({ backend });
        const { out, cache } = spatialGroupnormForward(stored(x), gamma, beta, G, {}, [N, C, S], layout);
        return { out, ...spatialGroupnormBackward(stored(dout), cache) };
      };
      expectBackendsAgree(dtype, run, terms(typed(dtype, x), gamma, typed(dtype, dout), N, C, S, G, 1e-5));
    });
  });
});

/** float64 statistics of each (item, group) of channels-first data, two passes. */
function groupStats(x: ArrayLike<number>, N: number, C: number, S: number, G: number) {
  const K = C / G;
  const mean: number[] = [];
  const variance: number[] = [];
  for (let q = 0; q < N * G; q++) {
    let m = 0;
    for (let e = 0; e < K * S; e++) m += x[q * K * S + e];
    m /= K * S;
    let v = 0;
    for (let e = 0; e < K * S; e++) v += (x[q * K * S + e] - m) ** 2;
    mean.push(m);
    variance.push(v / (K * S));
  }
  return { mean, variance };
}

describe.each(["simd", "scalar"] as Backend[])("%s backend, channels-last statistics", (backend) => {
  // [N, C, S, G]; the values of each group as the test says, channels first.
  const cases: [string, number, number, number, number, (q: number, e: number, r: number) => number][] = [
    ["a mean of 1e4 next to a spread of 1", 2, 64, 301, 8, (q, _e, r) => 1e4 * (1 + q) + r],
    ["sorted values (the first positions far from the mean: a second pass)", 2, 16, 500, 4, (_q, e) => e / 7],
    ["channels of one group with means 1e3 apart", 1, 6, 200, 2, (_q, e, r) => 1e3 * Math.floor(e / 200) + r],
  ];
  test.each(cases)("float32, %s", (_, N, C, S, G, value) => {
    initSync({ backend });
    const K = C / G;
    const first = new Float32Array(N * C * S);
    const r = randn(41, first.length);
    for (let q = 0; q < N * G; q++) for (let e = 0; e < K * S; e++) first[q * K * S + e] = value(q, e, r[q * K * S + e]);
    const ref = groupStats(first, N, C, S, G);
    const { out, cache } = spatialGroupnormForward(
      Float32Array.from(toChannelsLast(first, N, C, S)), new Float32Array(C).fill(1), new Float32Array(C), G, { eps: 0 }, [N, C, S], "NHWC",
    );
    for (let q = 0; q < N * G; q++) {
      expect(Math.abs(cache.mean[q] + cache.meanLo[q] - ref.mean[q]) / Math.sqrt(ref.variance[q])).toBeLessThan(1e-6);
      expect(Math.abs(cache.variance[q] / ref.variance[q] - 1)).toBeLessThan(1e-5);
    }
    // x̂ to float32 precision, against float64.
    const xHat = toChannelsLast(Array.from(first, (v, i) => {
      const q = Math.floor(i / (K * S));
      return (v - ref.mean[q]) / Math.sqrt(ref.variance[q]);
    }), N, C, S);
    expect(maxAbs(out.map((v, i) => v - xHat[i]))).toBeLessThan(2e-5 * Math.max(1, maxAbs(xHat)));
  });

  test("float32 values ±5e18 (block sums of squares overflow: the exact path) and a NaN", () => {
    initSync({ backend });
    const [N, C, S, G] = [1, 4, 40, 2];
    const first = new Float32Array(N * C * S);
    for (let e = 0; e < 80; e++) first[e] = e % 2 ? 5e18 : -5e18;
    first.fill(1, 80);
    first[100] = NaN;
    const { cache } = spatialGroupnormForward(
      Float32Array.from(toChannelsLast(first, N, C, S)), new Float32Array(C).fill(1), new Float32Array(C), G, {}, [N, C, S], "NHWC",
    );
    expect(cache.mean[0]).toBe(0);
    expect(cache.variance[0] / 2.5e37).toBeCloseTo(1, 6);
    expect(cache.mean[1]).toBeNaN();
  });
});

describe("errors", () => {
  const x = Float64Array.from(randn(21, 48));
  const gamma = new Float64Array(6).fill(1);
  const beta = new Float64Array(6);
  test.each<[string, () => unknown, RegExp]>([
    ["G not dividing C", () => spatialGroupnormForward(x, gamma, beta, 4, {}, [2, 6, 4]), /G = 4 must divide the number of channels C = 6/],
    ["G not a positive integer", () => spatialGroupnormForward(x, gamma, beta, 0, {}, [2, 6, 4]), /G must be a positive integer/],
    ["shape's C", () => spatialGroupnormForward(x, gamma, beta, 2, {}, [2, 4, 6]), /shape\[1\] must be the number of channels, 6/],
    ["shape's size", () => spatialGroupnormForward(x, gamma, beta, 2, {}, [2, 6, 5]), /must have 60 values/],
    ["no shape", () => spatialGroupnormForward(x, gamma, beta, 2, {}, undefined as never), /shape must be/],
    ["layout", () => spatialGroupnormForward(x, gamma, beta, 2, {}, [2, 6, 4], "CHWN" as never), /layout must be/],
    ["gnParam key", () => spatialGroupnormForward(x, gamma, beta, 2, { G: 2 } as never, [2, 6, 4]), /gnParam/],
    ["gamma's length", () => spatialGroupnormForward(x, new Float64Array(3), new Float64Array(3), 1, {}, [2, 6, 4]), /shape\[1\] must be the number of channels, 3/],
    ["out overlapping x", () => spatialGroupnormForward(x, gamma, beta, 2, {}, [2, 6, 4], "NCHW", { out: x }), /shares memory with x/],
    ["no cache", () => spatialGroupnormBackward(x, {} as never), /cache must be the cache/],
  ])("%s", (_, call, message) => {
    initSync({ backend: "simd" });
    const copy = Float64Array.from(x);
    expect(call).toThrow(message);
    expect(Array.from(x)).toEqual(Array.from(copy));
  });
});
