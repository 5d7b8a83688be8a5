// Threads (src/threads.ts): batch norm split between the caller and a worker pool on a shared
// memory. Results are checked against plain float64 loops written here, repeated runs must
// be bit-identical, and small batches must be exactly the one-thread results.
import { afterAll, describe, expect, test } from "vitest";
import type { Dtype, FloatArray } from "../src/dtype.js";
import {
  BatchNorm, type BNParam, batchnormBackward, batchnormBackwardAlt, batchnormForward, init, initSync, spatialBatchnormBackward,
  spatialBatchnormForward, threads, localStatistics, mergeStatistics, syncBatchnormForward, localGradientSums, sumGradientSums,
  syncBatchnormBackward,
} from "../src/index.js";
import { engine } from "../src/wasm.js";
import { expectClose, expectRelClose, randn, tolerance, typed } from "./helpers.js";

afterAll(() => initSync());

/** Channels-first (n, d, S) or rows (S = 1): the statistics, output and compact-form gradients in float64. */
function plain(x: ArrayLike<number>, n: number, d: number, S: number, gamma: ArrayLike<number>, beta: ArrayLike<number>, dout: ArrayLike<number>, eps: number) {
  const at = (i: number, j: number, s: number) => (i * d + j) * S + s;
  const count = n * S;
  const mean = new Float64Array(d), variance = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    let sum = 0;
    for (let i = 0; i < n; i++) for (let s = 0; s < S; s++) sum += x[at(i, j, s)];
    mean[j] = sum / count;
    let sq = 0;
    for (let i = 0; i < n; i++) for (let s = 0; s < S; s++) sq += (x[at(i, j, s)] - mean[j]) ** 2;
    variance[j] = sq / count;
  }
  const out = new Float64Array(x.length), dx = new Float64Array(x.length);
  const dgamma = new Float64Array(d), dbeta = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    const inv = 1 / Math.sqrt(variance[j] + eps);
    let sd = 0, sdx = 0;
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < S; s++) {
        const k = at(i, j, s);
        const xhat = (x[k] - mean[j]) * inv;
        out[k] = gamma[j] * xhat + beta[j];
        sd += dout[k];
        sdx += dout[k] * xhat;
      }
    }
    dbeta[j] = sd;
    dgamma[j] = sdx;
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < S; s++) {
        const k = at(i, j, s);
        const xhat = (x[k] - mean[j]) * inv;
        dx[k] = ((gamma[j] * inv) / count) * (count * dout[k] - sd - xhat * sdx);
      }
    }
  }
  return { mean, variance, out, dx, dgamma, dbeta };
}

/** Train forward, test forward with the running statistics it made, both backward forms. */
function runAll(dtype: Dtype, shape: number[], x: FloatArray, gamma: FloatArray, beta: FloatArray, dout: FloatArray) {
  const bnParam: BNParam = { mode: "train", momentum: 0 };
  const rows = shape.length === 2;
  const train = rows ? batchnormForward(x, gamma, beta, bnParam, { shape }) : spatialBatchnormForward(x, gamma, beta, bnParam, shape);
  const testParam = { ...bnParam, mode: "test" };
  const testOut = (rows ? batchnormForward(x, gamma, beta, testParam) : spatialBatchnormForward(x, gamma, beta, testParam, shape)).out;
  const compact = rows ? batchnormBackwardAlt(dout, train.cache!) : spatialBatchnormBackward(dout, train.cache!);
  const graph = batchnormBackward(dout, train.cache!);
  return { out: train.out, mean: train.cache!.mean, variance: train.cache!.variance, testOut, compact, graph, dtype };
}

const cases: [Dtype, number[]][] = [
  ["float32", [1000, 300]],
  ["float64", [777, 129]],
  ["float32", [6, 32, 40, 40]],
  ["float64", [5, 16, 33, 33]],
  ["float32", [3, 8, 128, 128]],
];

describe.each(cases)("%s %j on 2 threads", (dtype, shape) => {
  const n = shape[0], d = shape[1];
  const S = shape.slice(2).reduce((a, b) => a * b, 1);
  const seed = n * 31 + d;
  // A large mean relative to the spread: the merge of the threads' moments must keep it exact.
  const x = typed(dtype, randn(seed, n * d * S, 40, 3));
  const gamma = typed(dtype, randn(seed + 1, d, 1, 0.5));
  const beta = typed(dtype, randn(seed + 2, d));
  const dout = typed(dtype, randn(seed + 3, n * d * S));

  test("matches a float64 reference, bit-identical run to run, close to one thread", async () => {
    await init({ threads: 2 });
    expect(threads()).toBe(2);
    const forks = engine().pool!.forks;
    const a = runAll(dtype, shape, x, gamma, beta, dout);
    // Train: moments and normalize; each backward: sums and apply. (A copying test-mode call
    // goes through in cache-sized parts, each below the threshold: the caller alone.)
    expect(engine().pool!.forks - forks).toBe(2 + 2 * 2);
    const b = runAll(dtype, shape, x, gamma, beta, dout);
    const want = plain(x, n, d, S, gamma, beta, dout, 1e-5);
    const tol = tolerance(dtype);
    expectClose(a.out, want.out, tol.abs, "out");
    expectClose(a.testOut, want.out, tol.abs * 4, "test out");
    expectRelClose(a.mean, want.mean, tol.rel, "mean");
    expectRelClose(a.variance, want.variance, tol.rel * 4, "variance");
    for (const form of ["compact", "graph"] as const) {
      expectRelClose(a[form].dx, want.dx, tol.rel * 8, `${form} dx`);
      expectRelClose(a[form].dgamma, want.dgamma, tol.rel * 4, `${form} dgamma`);
      expectRelClose(a[form].dbeta, want.dbeta, tol.rel * 4, `${form} dbeta`);
    }
    for (const key of ["out", "mean", "variance", "testOut"] as const) expect(Array.from(b[key]), key).toEqual(Array.from(a[key]));
    for (const form of ["compact", "graph"] as const) {
      for (const key of ["dx", "dgamma", "dbeta"] as const) expect(Array.from(b[form][key]), `${form} ${key}`).toEqual(Array.from(a[form][key]));
    }
    initSync({ threads: 1 });
    const one = runAll(dtype, shape, x, gamma, beta, dout);
    expectClose(one.out, a.out, tol.abs, "one thread's out");
    expectRelClose(one.compact.dx, a.compact.dx, tol.rel * 8, "one thread's dx");
  });
});

test("below the size threshold a call runs on the caller alone: exactly the one-thread results", async () => {
  const x = typed("float32", randn(5, 64 * 100, 3, 2));
  const gamma = typed("float32", randn(6, 100));
  const beta = typed("float32", randn(7, 100));
  const dout = typed("float32", randn(8, 64 * 100));
  initSync({ threads: 1 });
  const one = runAll("float32", [64, 100], x, gamma, beta, dout);
  await init({ threads: 2 });
  const forks = engine().pool!.forks;
  const two = runAll("float32", [64, 100], x, gamma, beta, dout);
  expect(engine().pool!.forks).toBe(forks);
  expect(Array.from(two.out)).toEqual(Array.from(one.out));
  expect(Array.from(two.compact.dx)).toEqual(Array.from(one.compact.dx));
});

test("layers and workspaces keep the engine (and thread count) they were created with", async () => {
  await init({ threads: 2 });
  const layer = new BatchNorm(64);
  initSync({ threads: 1 });
  expect(threads()).toBe(1);
  expect(layer.engine.threads).toBe(2);
  const ws = layer.workspace([64, 64, 8, 8]);
  const x = randn(9, ws.size, -2, 5);
  ws.x.set(x);
  ws.forward();
  const want = plain(x, 64, 64, 64, layer.gamma, layer.beta, new Float64Array(ws.size), 1e-5);
  expectClose(ws.out, want.out, tolerance("float32").abs, "workspace out");
});

test("threads: a whole number from 1 to 256; elsewhere than simd it is 1", async () => {
  for (const bad of [0, 1.5, "2", -1, 1000]) expect(() => initSync({ threads: bad as number })).toThrow(/threads must be a whole number from 1 to 256/);
  initSync({ backend: "js", threads: 2 });
  expect(threads()).toBe(1);
  await init({ backend: "scalar", threads: 2 });
  expect(threads()).toBe(1);
});

test("on a threaded engine the fused ReLU and synchronized steps run on the caller: the one-thread results", async () => {
  const [N, D] = [1024, 256]; // 1 MiB of float32, above the threshold
  const x = typed("float32", randn(21, N * D, 3, 2));
  const dout = typed("float32", randn(22, N * D));
  const gamma = typed("float32", randn(23, D, 1, 0.5)), beta = typed("float32", randn(24, D, 0, 0.5));
  const run = () => {
    const bnParam: BNParam<Float32Array> = { mode: "train", activation: "relu" };
    const fused = batchnormForward(x, gamma, beta, bnParam, { shape: [N, D] });
    const grads = batchnormBackward(dout, fused.cache);
    const stats = mergeStatistics([localStatistics(x, D)]);
    const synced = syncBatchnormForward(x, gamma, beta, stats, { mode: "train" });
    const sums = sumGradientSums([localGradientSums(dout, synced.cache)]);
    return { out: fused.out, dx: grads.dx, syncOut: synced.out, syncDx: syncBatchnormBackward(dout, synced.cache, sums).dx };
  };
  await init({ threads: 1 });
  const one = run();
  await init({ threads: 2 });
  expect(threads()).toBe(2);
  const two = run();
  for (const key of ["out", "dx", "syncOut", "syncDx"] as const) expect(Array.from(two[key]).every((v, i) => Object.is(v, one[key][i])), key).toBe(true);
  let negative = 0;
  for (const v of one.out) if (v < 0) negative++;
  expect(negative).toBe(0);
});
