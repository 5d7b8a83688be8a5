// Statistics that stay accurate when a feature's mean is far above its spread, and NaN
// that stays in its own column.
import { describe, expect, test } from "vitest";
import {
  type Backend, BatchNorm, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync, spatialBatchnormBackward, spatialBatchnormForward,
} from "../src/index.js";
import { expectClose, expectRelClose, randn } from "./helpers.js";

/** Column means and biased variances in float64, two passes: an oracle written here. */
function columnStats(x: ArrayLike<number>, n: number, d: number) {
  const mean = new Float64Array(d);
  const variance = new Float64Array(d);
  for (let i = 0; i < n * d; i++) mean[i % d] += x[i] / n;
  for (let i = 0; i < n * d; i++) variance[i % d] += (x[i] - mean[i % d]) ** 2 / n;
  return { mean, variance };
}

/**
 * Compact-form gradients of the package (γ = 1, random dout) against the same formula in
 * float64 from the oracle's statistics, column by column.
 */
function expectGradientsOfOracle(x: Float32Array, n: number, d: number, eps: number, cache: Parameters<typeof batchnormBackwardAlt>[1]) {
  const ref = columnStats(x, n, d);
  const xHat = Float64Array.from(x, (v, i) => (v - ref.mean[i % d]) / Math.sqrt(ref.variance[i % d] + eps));
  const dout = Float32Array.from(randn(22, n * d));
  const { dx, dgamma, dbeta } = batchnormBackwardAlt(dout, cache);
  for (let j = 0; j < d; j++) {
    let sumDout = 0;
    let sumDoutXHat = 0;
    for (let r = 0; r < n; r++) (sumDout += dout[r * d + j]), (sumDoutXHat += dout[r * d + j] * xHat[r * d + j]);
    expectRelClose([dbeta[j], dgamma[j]], [sumDout, sumDoutXHat], 2e-5, `dbeta, dgamma of column ${j}`);
    const scale = 1 / Math.sqrt(ref.variance[j] + eps) / n;
    const want = Array.from({ length: n }, (_, r) => scale * (n * dout[r * d + j] - sumDout - xHat[r * d + j] * sumDoutXHat));
    expectRelClose(Array.from({ length: n }, (_, r) => dx[r * d + j]), want, 2e-5, `dx of column ${j}`);
  }
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

const ULP64 = 2 ** -52;
const EXACT_GAMMA = Float64Array.from([1.5, -0.5, 2]);
const EXACT_BETA = Float64Array.from([0.25, 0, -1]);

/**
 * k/1024 for pseudo-random integers k in ±1023: 1e7 plus any of them is exact in float64, and
 * so is its difference from 1e7, while the mean of N = 999 of them is not (rounded to float64,
 * 1e7 + mean is off by up to 1e-9, thousands of ulps of x̂).
 */
function exactOffsets(length: number): Float64Array {
  return Float64Array.from({ length }, (_, i) => Math.round(((Math.sin(i * 12.9898 + 1) * 43758.5453) % 1) * 1023) / 1024);
}

/**
 * Train-mode out and compact-form gradients (eps 1e-5) of a column of values 1e7 + offsets,
 * from the exact offsets; with bounds of a few roundings of out's scale and of γ·invStd·dout.
 * The plain-JS backend's plain sums over 999 values (and the oracle's) reach ~44 ulps; with the
 * mean rounded to float64, out was off by 2e-9 and dx by thousands of ulps.
 */
function exactColumn(offsets: number[], dout: number[], gamma: number, beta: number) {
  const n = offsets.length;
  const offset = offsets.reduce((s, v) => s + v / n, 0);
  const inv = 1 / Math.sqrt(offsets.reduce((s, v) => s + (v - offset) ** 2 / n, 0) + 1e-5);
  const xHat = offsets.map((v) => (v - offset) * inv);
  const dbeta = dout.reduce((s, g) => s + g, 0);
  const dgamma = dout.reduce((s, g, r) => s + g * xHat[r], 0);
  return {
    offset, dbeta, dgamma,
    out: xHat.map((v) => gamma * v + beta),
    dx: dout.map((g, r) => ((gamma * inv) / n) * (n * g - dbeta - xHat[r] * dgamma)),
    outBound: 64 * ULP64 * (2 * Math.abs(gamma) + Math.abs(beta)),
    dxBound: 128 * ULP64 * Math.max(...dout.map((g) => Math.abs(gamma * inv * g))),
  };
}

/** Every |got − want| < bound. */
function expectNear(got: number[], want: number[], bound: number, what: string) {
  const worst = Math.max(...got.map((v, i) => Math.abs(v - want[i])));
  expect(worst, what).toBeLessThan(bound);
}

describe.each(["simd", "scalar", "js"] as Backend[])("%s backend", (backend) => {
  test("float64, mean 1e7, std 0.6: mean to twice float64's precision; out and both backward forms within a few ulps of exact statistics", () => {
    initSync({ backend });
    const n = 999, d = 3;
    const offsets = exactOffsets(n * d);
    const x = offsets.map((v) => 1e7 + v);
    const dout = Float64Array.from(randn(5, n * d));
    const { out, cache } = batchnormForward(x, EXACT_GAMMA, EXACT_BETA, { mode: "train" });
    const grads = { graph: batchnormBackward(dout, cache!), compact: batchnormBackwardAlt(dout, cache!) };
    for (let j = 0; j < d; j++) {
      const column = (a: ArrayLike<number>) => Array.from({ length: n }, (_, r) => a[r * d + j]);
      const want = exactColumn(column(offsets), column(dout), EXACT_GAMMA[j], EXACT_BETA[j]);
      expect(Math.abs(cache!.mean[j] - 1e7 + cache!.meanLo[j] - want.offset), `mean + meanLo of column ${j}`).toBeLessThan(4 * ULP64);
      expectNear(column(out), want.out, want.outBound, `out of column ${j}`);
      for (const [form, { dx, dgamma, dbeta }] of Object.entries(grads)) {
        expect(Math.abs(dbeta[j] - want.dbeta), `${form} dbeta ${j}`).toBeLessThan(64 * ULP64 * n);
        expect(Math.abs(dgamma[j] - want.dgamma), `${form} dgamma ${j}`).toBeLessThan(64 * ULP64 * n);
        expectNear(column(dx), want.dx, want.dxBound, `${form} dx of column ${j}`);
      }
    }
  });

  test("float64 channels first (333, 3, 3, 1), mean 1e7, std 0.6: out and dx within a few ulps of exact statistics", () => {
    initSync({ backend });
    // The case above as channels: value s of channel j of item i is the value of row i·3 + s.
    const items = 333, C = 3, S = 3, count = items * S;
    const offsets = exactOffsets(count * C);
    const at = (k: number, j: number) => (Math.floor(k / S) * C + j) * S + (k % S); // k = i·S + s
    const x = new Float64Array(count * C);
    for (let k = 0; k < count; k++) for (let j = 0; j < C; j++) x[at(k, j)] = 1e7 + offsets[k * C + j];
    const dout = Float64Array.from(randn(6, count * C));
    const { out, cache } = spatialBatchnormForward(x, EXACT_GAMMA, EXACT_BETA, { mode: "train" }, [items, C, S, 1]);
    const { dx } = spatialBatchnormBackward(dout, cache!);
    for (let j = 0; j < C; j++) {
      const channel = (a: ArrayLike<number>) => Array.from({ length: count }, (_, k) => a[at(k, j)]);
      const want = exactColumn(Array.from({ length: count }, (_, k) => offsets[k * C + j]), channel(dout), EXACT_GAMMA[j], EXACT_BETA[j]);
      expectNear(channel(out), want.out, want.outBound, `out of channel ${j}`);
      expectNear(channel(dx), want.dx, want.dxBound, `dx of channel ${j}`);
    }
  });

  test.each([
    ["N = 8192, mean 1e4, std 1", 1e4, 1, false, 6, 8192],
    ["N = 8192, mean 1e4, std 1, each column sorted (a poor first shift)", 1e4, 1, true, 6, 8192],
    ["N = 8192, mean -5e5, std 30", -5e5, 30, false, 6, 8192],
    // D = 1 and 6: narrow groups, summed in blocks of 32 (assembly/columns.ts); 1024: one row per group.
    ["N = 8192, mean 1e4, std 1, D = 1", 1e4, 1, false, 1, 8192],
    ["mean 1e4, std 1, D = 1024 (N = 256)", 1e4, 1, false, 1024, 256],
    // 8 MiB and more stream through memory, four rows a quarter of the batch apart (N = 4k + 1: one left).
    ["mean 1e4, std 1, D = 2048, N = 1025 (streamed)", 1e4, 1, false, 2048, 1025],
  ] as const)("float32, %s", (_, loc, scale, sorted, d, n) => {
    initSync({ backend });
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

  // Squares of shifted values are summed in float32 in blocks of rows; past a spread of about
  // 1e18 they overflow, and such columns are summed again in float64 (assembly/statistics.ts).
  // 1e19 is the top of the range: the variance itself must be a float32. eps = 0 here, so the
  // variance of the tiny columns is not hidden behind eps.
  // D = 8: narrow groups; D = 1024 (each spread repeated): rows of 4 KiB, whose statistics
  // take the streaming loop in cache too.
  test.each([
    [8, 512],
    [1024, 48],
  ])("float32, column spreads from 1e-15 to 1e19 (eps = 0), D = %i: statistics, out and gradients", (d, n) => {
    initSync({ backend });
    const scales = [1e-15, 1e-10, 1e-3, 1, 1e3, 1e10, 1e15, 1e19];
    const scaleOf = (j: number) => scales[j % scales.length];
    const z = randn(21, n * d);
    const x = Float32Array.from(z, (v, i) => scaleOf(i % d) * (v + 3));
    const ref = columnStats(x, n, d);
    const { out, cache } = batchnormForward(x, new Float32Array(d).fill(1), new Float32Array(d), { mode: "train", eps: 0 });
    for (let j = 0; j < d; j++) {
      expect(Math.abs(cache!.variance[j] / ref.variance[j] - 1), `variance of column ${j} (scale ${scaleOf(j)})`).toBeLessThan(2e-5);
    }
    const xHat = Float64Array.from(x, (v, i) => (v - ref.mean[i % d]) / Math.sqrt(ref.variance[i % d]));
    expectClose(out, xHat, 5e-5, "out");
    expectGradientsOfOracle(x, n, d, 0, cache!);
  });

  // Groups of 4 KiB and more take the column sums' streaming loops in cache too, four groups a
  // quarter of the batch apart into float32 partial sums (assembly/statistics.ts, backward.ts):
  // N = 1003 leaves three rows to the blocked loop; 1031 columns make groups of 8 rows (41 of
  // them: one left, then 5 rows row by row).
  test.each([
    [1024, 1003],
    [1031, 333],
  ])("float32, mean 1e4, std 1, D = %i, N = %i: statistics, out and gradients", (d, n) => {
    initSync({ backend });
    const x = Float32Array.from(randn(d + n, n * d, 1e4, 1));
    const ref = columnStats(x, n, d);
    const { out, cache } = batchnormForward(x, new Float32Array(d).fill(1), new Float32Array(d), { mode: "train" });
    expectRelClose(cache!.variance, ref.variance, 2e-5, "variance");
    const xHat = Float64Array.from(x, (v, i) => (v - ref.mean[i % d]) / Math.sqrt(ref.variance[i % d] + 1e-5));
    expectClose(out, xHat, 5e-5, "out");
    expectGradientsOfOracle(x, n, d, 1e-5, cache!);
  });

  test("float32 channels first (N, C, H, W): a channel with spread 1e19 next to ones of spread 1", () => {
    initSync({ backend });
    const [N, C, S] = [6, 3, 25];
    const x = Float32Array.from(randn(23, N * C * S), (v, i) => (Math.floor(i / S) % C === 1 ? 1e19 : 1) * (v + 3));
    const { out, cache } = spatialBatchnormForward(x, new Float32Array(C).fill(1), new Float32Array(C), { mode: "train", eps: 0 }, [N, C, 5, 5]);
    const channelMajor = Float64Array.from({ length: N * C * S }, (_, k) => {
      const [c, rest] = [Math.floor(k / (N * S)), k % (N * S)];
      return x[(Math.floor(rest / S) * C + c) * S + (rest % S)];
    });
    for (let c = 0; c < C; c++) {
      let mean = 0;
      for (let k = 0; k < N * S; k++) mean += channelMajor[c * N * S + k] / (N * S);
      let variance = 0;
      for (let k = 0; k < N * S; k++) variance += (channelMajor[c * N * S + k] - mean) ** 2 / (N * S);
      expect(Math.abs(cache!.variance[c] / variance - 1), `variance of channel ${c}`).toBeLessThan(2e-5);
      for (let k = 0; k < N * S; k++) {
        const i = (Math.floor(k / S) * C + c) * S + (k % S);
        expect(Math.abs(out[i] - (x[i] - mean) / Math.sqrt(variance))).toBeLessThan(5e-5);
      }
    }
  });

  // The per-feature 1/sqrt(var + eps) comes from an f32 estimate and a Newton step in f64
  // (assembly/normalize.ts): it must round like the f64 value, which the estimate alone misses
  // in about a quarter of the features. Frozen statistics (eval mode) make var + eps exact here;
  // the last features leave the estimate's range (1e-30 to 1e30) and take the f64 path.
  test("float32: 1/sqrt(var + eps) is the float32 rounding of its float64 value", () => {
    initSync({ backend });
    const d = 1031;
    const bn = new BatchNorm(d, { eps: 0 });
    const exponents = randn(31, d, 0, 8).map((e) => Math.max(-25, Math.min(25, e)));
    const edge = [1e-40, 1e40, NaN, 0];
    bn.runningVar.set(Float64Array.from(exponents, (e, j) => (j >= d - edge.length ? edge[j - (d - edge.length)] : 10 ** e)));
    bn.eval();
    const ws = bn.workspace(2);
    ws.forward();
    let differ = 0;
    for (let j = 0; j < d; j++) {
      const want = Math.fround(1 / Math.sqrt(bn.runningVar[j]));
      if (Number.isNaN(want)) expect(ws.invStd[j]).toBeNaN();
      else if (ws.invStd[j] !== want) {
        differ++;
        expect(Math.abs(ws.invStd[j] / want - 1), `feature ${j}`).toBeLessThan(1.2e-7);
      }
    }
    expect(differ, "features whose invStd is not the rounded float64 value").toBeLessThanOrEqual(1);
    ws.dispose();
  });

  test.each(["float32", "float64"] as const)("%s: a constant column gives beta, or NaN (0/0) with eps = 0, in that column only", (dtype) => {
    initSync({ backend });
    const Type = dtype === "float64" ? Float64Array : Float32Array;
    const n = 33;
    const d = 5;
    const x = Type.from(randn(8, n * d, 2, 3));
    for (let r = 0; r < n; r++) x[r * d + 3] = 1234.5;
    const gamma = new Type(d).fill(1.5);
    const beta = Type.from([0.25, -1, 2, 0.75, 3]);
    const withEps = batchnormForward(x, gamma, beta, { mode: "train" });
    const noEps = batchnormForward(x, gamma, beta, { mode: "train", eps: 0 });
    for (let i = 0; i < n * d; i++) {
      if (i % d === 3) {
        expect(withEps.out[i]).toBe(beta[3]);
        expect(noEps.out[i]).toBeNaN();
      } else {
        expect(Number.isFinite(noEps.out[i])).toBe(true);
      }
    }
    const dout = Type.from(randn(9, n * d));
    const grads = batchnormBackwardAlt(dout, withEps.cache!);
    // x̂ = 0 in the column: dx = γ·invStd·(dout − mean(dout)), dγ = 0.
    let mean = 0;
    for (let r = 0; r < n; r++) mean += dout[r * d + 3] / n;
    expect(grads.dgamma[3]).toBe(0);
    for (let r = 0; r < n; r++) {
      expect(grads.dx[r * d + 3]).toBeCloseTo(1.5 / Math.sqrt(1e-5) * (dout[r * d + 3] - mean), dtype === "float64" ? 9 : 2);
    }
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

// How close the float32 variance comes to the float64 value, in units in the last place of
// float32: the plain-JS backend sums in float64 and rounds once; the SIMD kernels sum blocks of
// rows in float32 first (assembly/statistics.ts), whose rounding is bounded here so that a
// change of the blocks (longer ones, say) that costs accuracy shows.
describe("float32 variance in ulps of the float64 value, mean 1e4, std 1", () => {
  const ulp = (v: number) => 2 ** (Math.floor(Math.log2(Math.abs(Math.fround(v)))) - 23);
  test.each([
    ["simd", 256, 1024, 1.25],
    ["simd", 1003, 1024, 1.25],
    ["simd", 333, 1031, 1.25],
    ["simd", 1025, 2048, 1.25], // 8 MiB: streamed, blocks of 32 rows
    ["js", 256, 1024, 0.5 + 1e-6],
    ["js", 1025, 2048, 0.5 + 1e-6],
  ] as const)("%s backend, (%i, %i): within %f ulp", (backend, n, d, bound) => {
    initSync({ backend: backend as Backend });
    const x = Float32Array.from(randn(n + d, n * d, 1e4, 1));
    const ref = columnStats(x, n, d);
    const { cache } = batchnormForward(x, new Float32Array(d).fill(1), new Float32Array(d), { mode: "train" });
    let worst = 0;
    for (let j = 0; j < d; j++) worst = Math.max(worst, Math.abs(cache!.variance[j] - ref.variance[j]) / ulp(ref.variance[j]));
    expect(worst).toBeLessThanOrEqual(bound);
  });
});
