// Synchronized batch norm: the merge of shards' statistics against float64 statistics of the
// concatenated batch (plain loops here), and K shards' forward and backward against the
// single-process BatchNorm on the whole batch, for rows and spatial data, every backend.
import { beforeEach, describe, expect, test } from "vitest";
import type { Dtype, FloatArray } from "../src/dtype.js";
import {
  type Backend, type BNParam, BatchNorm, ChangedInputError, SyncBatchNorm, batchnormBackwardAlt, batchnormForward, initSync, localGradientSums,
  localStatistics, mergeStatistics, spatialBatchnormBackward, spatialBatchnormForward, sumGradientSums, syncBatchnormBackward,
  syncBatchnormForward,
} from "../src/index.js";
import type { Layout } from "../src/shape.js";
import { rng } from "../demo/data.js";
import { expectClose, expectRelClose, randn, tolerance, typed, unitRoundoff } from "./helpers.js";

/** Value s of channel c of item i of (n, C, S) data stored in `layout`. */
function index(layout: Layout, i: number, c: number, s: number, C: number, S: number): number {
  return layout === "NHWC" || layout === "NLC" ? (i * S + s) * C + c : (i * C + c) * S + s;
}

/** Float64 count, mean and M2 per channel by two plain passes over (n, C, S) data. */
function plainStatistics(x: ArrayLike<number>, n: number, C: number, S: number, layout: Layout) {
  const count = n * S;
  const mean = new Float64Array(C);
  const m2 = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let sum = 0;
    for (let i = 0; i < n; i++) for (let s = 0; s < S; s++) sum += x[index(layout, i, c, s, C, S)];
    mean[c] = sum / count;
    let sq = 0;
    for (let i = 0; i < n; i++) for (let s = 0; s < S; s++) sq += (x[index(layout, i, c, s, C, S)] - mean[c]) ** 2;
    m2[c] = sq;
  }
  return { count, mean, m2 };
}

/** Sizes of k shards (some empty) adding up to n, drawn by a seeded generator. */
function unevenSplit(seed: number, n: number, k: number): number[] {
  const u = rng(seed);
  const cuts = Array.from({ length: k - 1 }, () => Math.floor(u() * (n + 1))).sort((a, b) => a - b);
  const sizes = [...cuts, n].map((c, i) => c - (i ? cuts[i - 1] : 0));
  // At least one empty shard in half of the cases.
  if (seed % 2 === 0 && k > 2) {
    sizes[k - 1] += sizes[1];
    sizes[1] = 0;
  }
  return sizes;
}

/** The shards of (n, ...rest) data: item ranges, the same slices in any layout (N outermost). */
function shardsOf<A extends FloatArray>(x: A, sizes: number[], itemValues: number): A[] {
  let at = 0;
  return sizes.map((m) => x.subarray((at += m) * itemValues - m * itemValues, at * itemValues) as A);
}

function concat<A extends FloatArray>(parts: A[]): A {
  const all = new (parts[0].constructor as new (n: number) => A)(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

const backends: Backend[] = ["simd", "scalar", "js"];

describe.each(backends)("%s backend", (backend) => {
  beforeEach(() => {
    initSync({ backend });
  });

  describe.each(["float64", "float32"] as Dtype[])("%s", (dtype) => {
    test.each([
      { shape: [37, 5], layout: "NCHW" as Layout },
      { shape: [23, 3, 4, 5], layout: "NCHW" as Layout },
      { shape: [19, 4, 3, 3], layout: "NHWC" as Layout },
      { shape: [17, 6, 7], layout: "NCL" as Layout },
    ])("merge of uneven shards $shape $layout = statistics of the whole batch", ({ shape, layout }) => {
      const [n, C] = shape;
      const S = shape.slice(2).reduce((a, b) => a * b, 1);
      for (let seed = 1; seed <= 6; seed++) {
        // Far from zero with a small spread: a merge that loses digits shows.
        const x = typed(dtype, randn(seed * 31 + n, n * C * S, 100, 3));
        const want = plainStatistics(x, n, C, S, layout);
        const sizes = unevenSplit(seed, n, 2 + (seed % 3));
        const parts = shardsOf(x, sizes, C * S).map((part, k) =>
          localStatistics(part, C, shape.length === 2 ? undefined : { shape: [sizes[k], ...shape.slice(1)], layout }),
        );
        parts.forEach((p, k) => expect(p[0]).toBe(sizes[k] * S));
        const merged = mergeStatistics(parts);
        expect(merged[0]).toBe(want.count);
        // float64 data: float64 rounding, the mean to ~1e-15 of |mean|, M2 to ~1e-13 of itself.
        // float32 data: the kernels sum squares in float32 blocks (assembly/statistics.ts), so
        // M2 is as accurate as float32 (the single-process statistics are the same).
        const m2Rel = dtype === "float64" ? 1e-12 : 32 * unitRoundoff("float32");
        expectClose(merged.subarray(1, 1 + C), want.mean, 1e-13 * 100, `mean, split ${sizes}`);
        for (let j = 0; j < C; j++) expect(Math.abs(merged[1 + C + j] - want.m2[j]), `M2 ${j}`).toBeLessThanOrEqual(m2Rel * want.m2[j]);
      }
    });
  });

  test("empty shards change nothing, and the merge does not depend on the split beyond rounding", () => {
    const C = 3;
    const x = randn(5, 40 * C, -7, 2);
    const whole = localStatistics(x, C);
    const empty = localStatistics(new Float64Array(0), C);
    expect(Array.from(empty)).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(mergeStatistics([empty, whole, empty])).toEqual(whole);
    expect(mergeStatistics([whole])).toEqual(whole);
    const a = mergeStatistics(shardsOf(x, [1, 39], C).map((p) => localStatistics(p, C)));
    const b = mergeStatistics(shardsOf(x, [13, 0, 20, 7], C).map((p) => localStatistics(p, C)));
    for (const m of [a, b]) {
      expect(m[0]).toBe(40);
      for (let j = 1; j < m.length; j++) expect(Math.abs(m[j] - whole[j])).toBeLessThanOrEqual(1e-13 * Math.abs(whole[j]));
    }
  });

  describe.each(["float64", "float32"] as Dtype[])("%s", (dtype) => {
    test.each([
      { shape: [41, 6], layout: "NCHW" as Layout, K: 3 },
      { shape: [41, 6], layout: "NCHW" as Layout, K: 2 },
      { shape: [9, 3, 4, 5], layout: "NCHW" as Layout, K: 3 },
      { shape: [9, 4, 3, 5], layout: "NHWC" as Layout, K: 2 },
    ])("K = $K shards of $shape $layout = one BatchNorm on the whole batch", ({ shape, layout, K }) => {
      const [n, C] = shape;
      const itemValues = shape.slice(1).reduce((a, b) => a * b, 1);
      const x = typed(dtype, randn(11, n * itemValues, 3, 2));
      const dout = typed(dtype, randn(12, n * itemValues));
      const gamma = typed(dtype, randn(13, C, 1, 0.4));
      const beta = typed(dtype, randn(14, C));
      const rows = shape.length === 2;
      const options = { momentum: 0.1, momentumConvention: "pytorch", runningVariance: "unbiased" } as const;

      // One process, the whole batch.
      const single: BNParam = { mode: "train", ...options, runningMean: typed(dtype, randn(15, C)), runningVar: typed(dtype, randn(16, C, 2, 0.1)) };
      const forward = rows ? batchnormForward(x, gamma, beta, single) : spatialBatchnormForward(x, gamma, beta, single, shape, layout);
      const backward = rows ? batchnormBackwardAlt(dout, forward.cache) : spatialBatchnormBackward(dout, forward.cache);

      // K workers: each its shard and its own copy of the state.
      const sizes = unevenSplit(K * 7, n, K);
      const xs = shardsOf(x, sizes, itemValues);
      const douts = shardsOf(dout, sizes, itemValues);
      const shapeOf = (k: number) => (rows ? undefined : { shape: [sizes[k], ...shape.slice(1)], layout });
      const stats = mergeStatistics(xs.map((part, k) => localStatistics(part, C, shapeOf(k))));
      const workers = xs.map((part, k) => {
        const bnParam: BNParam = { mode: "train", ...options, runningMean: typed(dtype, randn(15, C)), runningVar: typed(dtype, randn(16, C, 2, 0.1)) };
        return { bnParam, ...syncBatchnormForward(part, gamma, beta, stats, bnParam, shapeOf(k)) };
      });
      const sums = sumGradientSums(workers.map((w, k) => localGradientSums(douts[k], w.cache)));
      const grads = workers.map((w, k) => syncBatchnormBackward(douts[k], w.cache, sums));

      const tol = tolerance(dtype);
      const rel = dtype === "float64" ? 1e-12 : tol.rel;
      expectClose(concat(workers.map((w) => w.out)), forward.out, dtype === "float64" ? 1e-12 : tol.abs, "out");
      expectRelClose(concat(grads.map((g) => g.dx)), backward.dx, dtype === "float64" ? 1e-12 : 4 * tol.rel, "dx");
      for (const [k, w] of workers.entries()) {
        expectRelClose(grads[k].dgamma, backward.dgamma, rel, `dgamma of worker ${k}`);
        expectRelClose(grads[k].dbeta, backward.dbeta, rel, `dbeta of worker ${k}`);
        expectRelClose(w.bnParam.runningMean!, single.runningMean!, rel, `runningMean of worker ${k}`);
        expectRelClose(w.bnParam.runningVar!, single.runningVar!, rel, `runningVar of worker ${k}`);
        // Every worker holds the same global values, bit for bit.
        expect(grads[k].dgamma).toEqual(grads[0].dgamma);
        expect(w.bnParam.runningVar).toEqual(workers[0].bnParam.runningVar);
      }
    });

    test("the layer: SyncBatchNorm workers = one BatchNorm", () => {
      const shape = [10, 4, 3, 3];
      const [n, C] = shape;
      const itemValues = C * 9;
      const x = typed(dtype, randn(21, n * itemValues, -1, 3));
      const dout = typed(dtype, randn(22, n * itemValues));
      const one = BatchNorm.fromPyTorch({ num_features: C, dtype });
      one.gamma.set(typed(dtype, randn(23, C, 1, 0.3)));
      const out = one.forward(x, shape);
      const dx = one.backward(dout);
      const sizes = [4, 0, 6];
      const workers = sizes.map(() => {
        const layer = SyncBatchNorm.fromPyTorch({ num_features: C, dtype });
        layer.gamma.set(one.gamma);
        return layer;
      });
      const xs = shardsOf(x, sizes, itemValues);
      const douts = shardsOf(dout, sizes, itemValues);
      const stats = mergeStatistics(workers.map((w, k) => w.localStatistics(xs[k], [sizes[k], C, 3, 3])));
      const outs = workers.map((w, k) => w.forwardSync(xs[k], stats, { shape: [sizes[k], C, 3, 3] }));
      const sums = sumGradientSums(workers.map((w, k) => w.gradientSums(douts[k])));
      const dxs = workers.map((w, k) => w.backwardSync(douts[k], sums));
      const tol = tolerance(dtype);
      const rel = dtype === "float64" ? 1e-12 : tol.rel;
      expectClose(concat(outs), out, dtype === "float64" ? 1e-12 : tol.abs, "out");
      expectRelClose(concat(dxs), dx, dtype === "float64" ? 1e-12 : 4 * tol.rel, "dx");
      for (const w of workers) {
        expectRelClose(w.dgamma, one.dgamma, rel, "dgamma");
        expectRelClose(w.dbeta, one.dbeta, rel, "dbeta");
        expectRelClose(w.runningMean, one.runningMean, rel, "runningMean");
        expectRelClose(w.runningVar, one.runningVar, rel, "runningVar");
        expect(w.numBatchesTracked).toBe(1);
      }
    });
  });

  test("float64 far from zero: the merged mean keeps the shards' float64 accuracy", () => {
    const C = 2;
    const n = 64;
    const x = randn(31, n * C, 1e6, 1);
    const want = plainStatistics(x, n, C, 1, "NCHW");
    const parts = shardsOf(x, [10, 30, 0, 24], C).map((p) => localStatistics(p, C));
    const merged = mergeStatistics(parts);
    expectClose(merged.subarray(1, 1 + C), want.mean, 4e-16 * 1e6, "mean");
    // Each shard's mean travels as one float64, off by up to half an ulp of the mean: the
    // merge's n_k·(mean_k − mean)² terms then carry 2·n_k·|mean_k − mean|·ulp/2 each, which
    // no merge of this format avoids (12e-12 of M2 here, |mean|/std = 1e6).
    for (let j = 0; j < C; j++) {
      const ulp = 2 ** -52 * Math.abs(want.mean[j]);
      const bound = parts.reduce((b, p) => b + p[0] * Math.abs(p[1 + j] - want.mean[j]) * ulp, 1e-13 * want.m2[j]);
      expect(Math.abs(merged[1 + C + j] - want.m2[j]), `M2 ${j}`).toBeLessThanOrEqual(bound);
    }
  });
});

describe("bad input: clear errors, nothing changed", () => {
  const C = 3;
  const x = randn(41, 10 * C);
  const gamma = new Float64Array(C).fill(1);
  const beta = new Float64Array(C);
  const stats = localStatistics(x, C);

  test("statistics of a different D, wrong lengths, bad counts", () => {
    expect(() => mergeStatistics([stats, localStatistics(randn(1, 8), 4)])).toThrow(/parts\[1\] has 4 features.*expected D = 3/);
    expect(() => mergeStatistics([new Float64Array(4)])).toThrow(/1 \+ 2·D values/);
    expect(() => mergeStatistics([])).toThrow(/non-empty array/);
    expect(() => mergeStatistics([Float64Array.from([1.5, 0, 0, 0, 0, 0, 0])])).toThrow(/count, must be a whole number/);
    expect(() => mergeStatistics([Float64Array.from([2, 0, 0, 0, -1, 0, 0])])).toThrow(/M2 of feature 0 is negative/);
    expect(() => localStatistics(new Float32Array(7), C)).toThrow(/multiple of D = 3/);
    expect(() => localStatistics(new Float32Array(0), C, { shape: [1, C] })).toThrow(/x is empty: shape must be \[0, C\]/);
  });

  test("a forward with statistics that do not fit refuses before any change", () => {
    const bnParam = { mode: "train", runningMean: new Float64Array(C), runningVar: new Float64Array(C).fill(1) };
    const before = structuredClone(bnParam);
    expect(() => syncBatchnormForward(x, gamma, beta, localStatistics(randn(1, 8), 4), bnParam)).toThrow(/statistics has 4 features/);
    expect(() => syncBatchnormForward(x, gamma, beta, localStatistics(x.subarray(0, 3 * C), C), bnParam)).toThrow(/count 3, fewer than this shard's 10/);
    expect(() => syncBatchnormForward(x, gamma, beta, localStatistics(new Float64Array(0), C), bnParam)).toThrow(/count 0: every shard is empty/);
    expect(() => syncBatchnormForward(x, gamma, beta, stats, { ...bnParam, mode: "test" })).toThrow(/must be 'train'/);
    expect(() => syncBatchnormForward(x, gamma, new Float64Array(2), stats, bnParam)).toThrow(/gamma and beta/);
    expect(() => syncBatchnormForward(x, gamma, beta, stats, { ...bnParam, runningVariance: "unbiased" }, { shape: [10, C], out: new Float64Array(3) })).toThrow(/options.out must have length 30/);
    expect(bnParam).toEqual(before);
  });

  test("a backward with sums of the wrong length or a foreign cache", () => {
    const { cache } = syncBatchnormForward(x, gamma, beta, stats, { mode: "train" });
    const dout = randn(42, x.length);
    expect(() => syncBatchnormBackward(dout, cache, new Float64Array(2 * C + 1))).toThrow(/2·D = 6 values/);
    expect(() => syncBatchnormBackward(dout.subarray(1), cache, new Float64Array(2 * C))).toThrow(/dout must have length 30/);
    expect(() => localGradientSums(new Float32Array(30), cache as never)).toThrow(/Float64Array but the input is a Float32Array|float32 and float64/);
    expect(() => sumGradientSums([new Float64Array(6), new Float64Array(4)])).toThrow(/parts\[1\] must be a Float64Array of 6 values/);
    // dgamma is written before dbeta reads the sums: an output in the sums is refused.
    const sums = new Float64Array(2 * C);
    expect(() => syncBatchnormBackward(dout, cache, sums, { dgamma: sums.subarray(0, C) })).toThrow(/outputs.dgamma shares memory with sums/);
    expect(() => new SyncBatchNorm(C).gradientSums(new Float32Array(30))).toThrow(/need a forwardSync first/);
    const layer = new SyncBatchNorm(C, { dtype: "float64" }).eval();
    expect(() => layer.forwardSync(x, stats)).toThrow(/use forward\(\)/);
  });
});

// The cache refers to the shard (as batchnormForward's does) and keeps its checksum: a shard
// changed after the forward is refused before anything is written, and accepted again once
// it is back as it was.
describe.each(backends)("the cache refers to x and refuses a changed x (%s backend)", (backend) => {
  beforeEach(() => initSync({ backend }));
  const C = 4;
  const shape = [3, C, 2, 5];

  test.each(["float32", "float64"] as Dtype[])("%s: localGradientSums, syncBatchnormBackward, SyncBatchNorm.backwardSync", (dtype) => {
    const x = typed(dtype, randn(61, 3 * C * 10));
    const gamma = typed(dtype, randn(62, C));
    const beta = typed(dtype, randn(63, C));
    const dout = typed(dtype, randn(64, x.length));
    const stats = localStatistics(x, C, { shape });
    const { cache } = syncBatchnormForward(x, gamma, beta, stats, { mode: "train" }, { shape });
    expect(cache.x).toBe(x);
    const sums = localGradientSums(dout, cache);
    const dx = typed(dtype, new Float64Array(x.length).fill(7));
    const dgamma = typed(dtype, new Float64Array(C).fill(7));
    const saved = x[17];
    x[17] = saved + 1;
    expect(() => localGradientSums(dout, cache)).toThrow(ChangedInputError);
    expect(() => syncBatchnormBackward(dout, cache, sums, { dx, dgamma })).toThrow(/x was changed after the synchronized forward/);
    expect(dx.every((v) => v === 7) && dgamma.every((v) => v === 7)).toBe(true);
    x[17] = saved;
    expect(localGradientSums(dout, cache)).toEqual(sums);
    syncBatchnormBackward(dout, cache, sums, { dx, dgamma });
    expect(dx.some((v) => v !== 7)).toBe(true);

    const layer = new SyncBatchNorm(C, { dtype });
    layer.forwardSync(x, stats, { shape });
    const layerSums = layer.gradientSums(dout);
    const before = Float64Array.from(layer.dgamma);
    x[0] = -x[0] - 1;
    expect(() => layer.gradientSums(dout)).toThrow(ChangedInputError);
    expect(() => layer.backwardSync(dout, layerSums)).toThrow(ChangedInputError);
    expect(Array.from(layer.dgamma)).toEqual(Array.from(before));
  });
});
