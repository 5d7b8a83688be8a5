// Statistics that stay accurate when a feature's mean is far above its spread, and NaN
// that stays in its own column.
import { describe, expect, test } from "vitest";
import { type Backend, batchnormForward, initSync } from "../src/index.js";
import { expectClose, randn } from "./helpers.js";

/** Column means and biased variances in float64, two passes: an oracle written here. */
function columnStats(x: ArrayLike<number>, n: number, d: number) {
  const mean = new Float64Array(d);
  const variance = new Float64Array(d);
  for (let i = 0; i < n * d; i++) mean[i % d] += x[i] / n;
  for (let i = 0; i < n * d; i++) variance[i % d] += (x[i] - mean[i % d]) ** 2 / n;
  return { mean, variance };
}

/** What a naive one-pass float32 kernel would compute: E[x²] − E[x]² with float32 sums. */
function naiveFloat32Variance(x: Float32Array, n: number, d: number): Float32Array {
  const s1 = new Float32Array(d);
  const s2 = new Float32Array(d);
  for (let i = 0; i < n * d; i++) {
    s1[i % d] = Math.fround(s1[i % d] + x[i]);
    s2[i % d] = Math.fround(s2[i % d] + Math.fround(x[i] * x[i]));
  }
  return s2.map((s, j) => Math.fround(s / n) - Math.fround(s1[j] / n) ** 2);
}

describe.each(["simd", "scalar", "js"] as Backend[])("%s backend", (backend) => {
  test.each([
    ["N = 8192, mean 1e4, std 1", 1e4, 1, false, 6],
    ["N = 8192, mean 1e4, std 1, each column sorted (a poor first shift)", 1e4, 1, true, 6],
    ["N = 8192, mean -5e5, std 30", -5e5, 30, false, 6],
    // D = 1 and 6: narrow groups, summed in blocks of 32 (assembly/columns.ts); 1024: one row per group.
    ["N = 8192, mean 1e4, std 1, D = 1", 1e4, 1, false, 1],
    ["mean 1e4, std 1, D = 1024 (N = 256)", 1e4, 1, false, 1024],
  ] as const)("float32, %s", (_, loc, scale, sorted, d) => {
    initSync({ backend });
    const n = d === 1024 ? 256 : 8192;
    const x = Float32Array.from(randn(11, n * d, loc, scale));
    if (sorted) {
      for (let j = 0; j < d; j++) {
        const column = Float32Array.from({ length: n }, (_, r) => x[r * d + j]).sort();
        column.forEach((v, r) => (x[r * d + j] = v));
      }
    }
    const ref = columnStats(x, n, d);
    const { out, cache } = batchnormForward(x, new Float32Array(d).fill(1), new Float32Array(d), { mode: "train" });
    for (let j = 0; j < d; j++) {
      expect(Math.abs(cache!.variance[j] / ref.variance[j] - 1), `variance of column ${j}`).toBeLessThan(2e-5);
    }
    // x̂ = (x − mean)/std: here every digit of the mean's float32 rounding would show.
    const xHat = Float64Array.from(x, (v, i) => (v - ref.mean[i % d]) / Math.sqrt(ref.variance[i % d] + 1e-5));
    expectClose(out, xHat, 5e-5, "out");
    // The same data defeats the naive method, so this test can fail.
    const naive = naiveFloat32Variance(x, n, d);
    expect(Math.max(...naive.map((v, j) => Math.abs(v / ref.variance[j] - 1)))).toBeGreaterThan(1e-2);
  });

  test.each(["float32", "float64"] as const)("%s: NaN and Infinity stay in their own column", (dtype) => {
    initSync({ backend });
    const Type = dtype === "float64" ? Float64Array : Float32Array;
    const n = 40;
    const d = 9;
    const clean = Type.from(randn(5, n * d, 2, 3));
    const gamma = new Type(d).fill(1.5);
    const beta = new Type(d).fill(0.25);
    const dirty = clean.slice();
    dirty[7 * d + 2] = NaN;
    dirty[3 * d + 5] = Infinity;
    const a = batchnormForward(clean, gamma, beta, { mode: "train" });
    const b = batchnormForward(dirty, gamma, beta, { mode: "train" });
    for (let i = 0; i < n * d; i++) {
      const j = i % d;
      if (j === 2 || j === 5) expect(b.out[i], `column ${j} row ${Math.floor(i / d)}`).toBeNaN();
      else expect(b.out[i]).toBe(a.out[i]);
    }
  });
});
