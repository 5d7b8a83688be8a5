// Threads (src/threads.ts): batch norm split between the caller and a worker pool on a shared
// memory. Results are checked against plain float64 loops written here, repeated runs must
// be bit-identical, and small batches must be exactly the one-thread results.
import { afterAll, describe, expect, test } from "vitest";
import type { Dtype, FloatArray } from "../src/dtype.js";
import {
  BatchNorm, type BNParam, batchnormBackward, batchnormBackwardAlt, batchnormForward, init, initSync, spatialBatchnormBackward,
  spatialBatchnormForward, threads, localStatistics, mergeStatistics, syncBatchnormForward, localGradientSums, sumGradientSums,
  syncBatchnormBackward, layernormForward, layernormBackward,
} from "../src/index.js";
import { engine } from "../src/wasm.js";
import { expectClose, expectIdentical, expectRelClose, randn, tolerance, typed } from "./helpers.js";

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
  // The threads build is plain SIMD: its one-thread twin is the plain SIMD build.
  initSync({ threads: 1, relaxed: false });
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
  await init({ threads: 1, relaxed: false });
  const one = run();
  await init({ threads: 2 });
  expect(threads()).toBe(2);
  const two = run();
  for (const key of ["out", "dx", "syncOut", "syncDx"] as const) expect(Array.from(two[key]).every((v, i) => Object.is(v, one[key][i])), key).toBe(true);
  let negative = 0;
  for (const v of one.out) if (v < 0) negative++;
  expect(negative).toBe(0);
});

// Views of shared memory (docs/threads.md): growing a shared WebAssembly.Memory does not detach
// the views taken before; they keep the old buffer, of the old length, on the same bytes. Every
// place the package holds or is given such a view must re-derive it or refuse it.
describe("stale views of a threaded engine's shared memory", () => {
  const D = 64;
  /** A 2-thread engine with a workspace holding x, a view of its x, then the memory grown past that view's buffer. */
  async function grownAfterView(N = 32) {
    await init({ threads: 2 });
    const e = engine();
    const layer = new BatchNorm(D);
    const ws = layer.workspace(N);
    const x = randn(31, N * D, 2, 3);
    ws.x.set(x);
    const stale = ws.x;
    const before = e.heap.buffer.byteLength;
    // A workspace larger than the whole memory: the memory must grow.
    const big = layer.workspace(Math.ceil(before / (4 * D)) + 64);
    expect(e.heap.buffer.byteLength).toBeGreaterThan(before);
    expect(stale.buffer).toBeInstanceOf(SharedArrayBuffer);
    // The premise: not detached, the old buffer and its old length.
    expect(stale.length).toBe(N * D);
    expect(stale.buffer.byteLength).toBe(before);
    expect(stale.buffer).not.toBe(e.heap.buffer);
    return { e, layer, ws, x, stale, big, N };
  }

  test("a workspace's getters re-derive their views after growth, on the same bytes", async () => {
    const { e, ws, x, stale, big, N } = await grownAfterView();
    expect(ws.x).not.toBe(stale);
    expect(ws.x.buffer).toBe(e.heap.buffer);
    for (const key of ["x", "out", "dout", "dx", "mean", "variance", "invStd"] as const) expect(ws[key].buffer, key).toBe(e.heap.buffer);
    // The stale view still aliases the workspace's x: what it writes, the forward reads.
    const other = randn(32, N * D, -1, 2);
    stale.set(other);
    expectClose(ws.x, other, 1e-6, "x through the getter");
    const out = ws.forward();
    const want = plain(other, N, D, 1, new Float64Array(D).fill(1), new Float64Array(D), new Float64Array(N * D), 1e-5);
    expectClose(out, want.out, tolerance("float32").abs, "out");
    expect(Array.from(x.slice(0, 4))).not.toEqual(Array.from(other.slice(0, 4)));
    big.dispose();
  });

  test("a stale view given to a train forward is copied into the cache, as a fresh view is", async () => {
    const { e, ws, x, stale, big, N } = await grownAfterView();
    const gamma = typed("float32", randn(33, D, 1, 0.5));
    const beta = typed("float32", randn(34, D));
    const fwd = batchnormForward(stale, gamma, beta, { mode: "train" });
    expect(fwd.cache.x.buffer).not.toBe(stale.buffer);
    expect(fwd.cache.x.buffer).not.toBe(e.heap.buffer);
    // The workspace's memory is reused: the cache must not see it change.
    ws.x.fill(7);
    const dout = typed("float32", randn(35, N * D));
    const grads = batchnormBackwardAlt(dout, fwd.cache);
    const want = plain(typed("float32", x), N, D, 1, gamma, beta, dout, 1e-5);
    expectClose(fwd.out, want.out, tolerance("float32").abs, "out");
    expectRelClose(grads.dx, want.dx, tolerance("float32").rel * 8, "dx");
    expectRelClose(grads.dgamma, want.dgamma, tolerance("float32").rel * 4, "dgamma");
    big.dispose();
  });

  test("a stale view given to an eval-mode layer forward or a LayerNorm is copied, as a fresh view is", async () => {
    const { ws, x, stale, big, N } = await grownAfterView();
    const layer = new BatchNorm(D).eval();
    layer.runningMean.set(randn(36, D, 2, 0.5));
    layer.runningVar.set(randn(37, D, 9, 1));
    layer.forward(stale);
    const gamma = typed("float32", randn(38, D, 1, 0.5));
    const beta = typed("float32", randn(39, D));
    const ln = layernormForward(stale, gamma, beta);
    ws.x.fill(-3);
    const dout = typed("float32", randn(40, N * D));
    // The eval-mode backward's dgamma reads the forward's x.
    layer.backward(dout);
    const dgamma = new Float64Array(D);
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < D; j++) {
        const xf = Math.fround(x[i * D + j]);
        dgamma[j] += dout[i * D + j] * (xf - layer.runningMean[j]) / Math.sqrt(layer.runningVar[j] + 1e-5);
      }
    }
    expectRelClose(layer.dgamma, dgamma, tolerance("float32").rel * 4, "eval dgamma");
    // LayerNorm: its backward refuses a changed x; with a copy it runs.
    expect(() => layernormBackward(dout, ln.cache)).not.toThrow();
    big.dispose();
  });

  test("a stale view as an output is checked for overlap with the inputs like a fresh one", async () => {
    const { ws, x, stale, big, N } = await grownAfterView();
    const gamma = typed("float32", randn(41, D, 1, 0.5));
    const beta = typed("float32", randn(42, D));
    const runningMean = typed("float32", randn(43, D, 2, 0.5));
    const runningVar = typed("float32", randn(44, D, 9, 1));
    const bnParam = { mode: "test", runningMean, runningVar };
    // Part of x, shifted by a row: refused before anything is written.
    const shifted = stale.subarray(D);
    const before = ws.x.slice();
    expect(() => batchnormForward(ws.x.subarray(0, (N - 1) * D), gamma, beta, bnParam, { out: shifted })).toThrow(/shares memory with x/);
    expectClose(ws.x, before, 0, "x after the refused call");
    // Exactly x, through the stale view: allowed in test mode, and in place.
    const out = batchnormForward(ws.x, gamma, beta, bnParam, { out: stale }).out;
    expect(out).toBe(stale);
    const want = new Float64Array(N * D);
    for (let i = 0; i < N * D; i++) {
      const j = i % D;
      want[i] = gamma[j] * ((Math.fround(x[i]) - runningMean[j]) / Math.sqrt(runningVar[j] + 1e-5)) + beta[j];
    }
    expectClose(ws.x, want, tolerance("float32").abs, "in place through a stale view");
    big.dispose();
  });
});

test("Heap.pin and Heap.owns: a view of an older buffer of the shared memory comes back on the current one", async () => {
  await init({ threads: 2 });
  const { heap } = engine();
  const ptr = heap.alloc(4096);
  const old = heap.view("float32", ptr, 1024) as Float32Array;
  old.set(randn(51, 1024));
  const pinned = heap.pin(old);
  const big = heap.alloc(heap.buffer.byteLength + 65536);
  expect(old.buffer).not.toBe(heap.buffer);
  expect(heap.owns(old)).toBe(true);
  const again = pinned();
  expect(again.buffer).toBe(heap.buffer);
  expect(again.byteOffset).toBe(ptr);
  expectIdentical(again, old, "the same bytes");
  // A view taken after the growth from the old view (no pin) is recognised too.
  expect(heap.pin(old)().buffer).toBe(heap.buffer);
  // Arrays of other memory are not the engine's.
  expect(heap.owns(new Float32Array(new SharedArrayBuffer(16)))).toBe(false);
  heap.free(big);
  heap.free(ptr);
});

/** A float64 as an integer multiple of 2^-1100 (exact: every finite double is one). */
function exactOf(v: number): bigint {
  const bits = new BigUint64Array(new Float64Array([v]).buffer)[0];
  const e = Number((bits >> 52n) & 0x7ffn);
  const m = (bits & ((1n << 52n) - 1n)) | (e ? 1n << 52n : 0n);
  const scaled = m << BigInt(Math.max(e, 1) - 1075 + 1100);
  return bits >> 63n ? -scaled : scaled;
}

test("float64 on 2 and 3 threads: mean + meanLo is the exact mean to far below an ulp, as on one thread", async () => {
  // Found by the stress test: the merge of the threads' moments dropped the low parts of
  // all but the last thread, leaving mean + meanLo off by up to half an ulp of the mean.
  const [N, D] = [35, 2047]; // 573 KB, parts of 16 rows
  const x = randn(61, N * D, 1e4, 0.1);
  const gamma = new Float64Array(D).fill(1), beta = new Float64Array(D);
  for (const t of [1, 2, 3]) {
    await init({ threads: t });
    expect(threads()).toBe(t);
    const { cache } = batchnormForward(x, gamma, beta, { mode: "train" });
    let worst = 0;
    for (let j = 0; j < D; j++) {
      let sum = 0n;
      for (let i = 0; i < N; i++) sum += exactOf(x[i * D + j]);
      const error = (exactOf(cache.mean[j]) + exactOf(cache.meanLo[j])) * BigInt(N) - sum;
      // In ulps of the mean (2^-39 at 1e4 = 2^1061 units), per value.
      worst = Math.max(worst, Math.abs(Number(error >> 900n) / 2 ** 161 / N));
    }
    expect(worst, `${t} thread(s): worst error of mean + meanLo, in ulps of the mean`).toBeLessThan(1 / 64);
  }
});
