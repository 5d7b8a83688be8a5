// The cache refers to x (no copy) and a checksum (assembly/checksum.ts) makes a backward
// refuse an x changed since its forward: a changed element, swapped or shuffled rows, a refill.
import { beforeEach, describe, expect, test } from "vitest";
import {
  type Backend, BatchNorm, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync, reference, spatialBatchnormBackward,
  spatialBatchnormForward,
} from "../src/index.js";
import { CHECKSUM_WORDS } from "../src/kernels.js";
import { engine } from "../src/wasm.js";
import { randn } from "./helpers.js";

const f32 = (values: ArrayLike<number>) => Float32Array.from(values);

/** Fletcher's sums written out here, word by word, as the definition says. */
function fletcher(words: Uint32Array): number[] {
  const s = new Array(8).fill(0);
  words.forEach((w, i) => {
    s[i % 4] = (s[i % 4] + w) % 2 ** 32;
    s[4 + (i % 4)] = (s[4 + (i % 4)] + s[i % 4]) % 2 ** 32;
  });
  return s;
}

describe.each(["simd", "scalar", "js"] as Backend[])("%s backend", (backend) => {
  beforeEach(() => {
    initSync({ backend });
  });

  test.each([0, 1, 3, 4, 7, 8, 9, 31, 1000, 1027])("the kernel's sums of %i words, whole and in parts, are Fletcher's", (length) => {
    const { heap, kernels } = engine();
    const words = Uint32Array.from({ length }, (_, i) => (Math.imul(i + 1, 2654435761) >>> 0) ^ (i << 7));
    const base = heap.alloc(4 * length + 64);
    const state = base + 4 * length + 16 - ((4 * length) % 16);
    new Uint32Array(heap.buffer, base, length).set(words);
    new Uint32Array(heap.buffer, state, CHECKSUM_WORDS).fill(0);
    kernels.checksum(base, length, 0, state);
    const whole = Array.from(new Uint32Array(heap.buffer, state, CHECKSUM_WORDS));
    expect(whole).toEqual(fletcher(words));
    // In parts that start anywhere: the same sums.
    new Uint32Array(heap.buffer, state, CHECKSUM_WORDS).fill(0);
    const cut = [0, Math.floor(length / 3), Math.floor(length / 2) + 1, length].map((c) => Math.min(c, length));
    for (let k = 0; k + 1 < cut.length; k++) kernels.checksum(base + 4 * cut[k], cut[k + 1] - cut[k], cut[k], state);
    expect(Array.from(new Uint32Array(heap.buffer, state, CHECKSUM_WORDS))).toEqual(whole);
    heap.free(base);
  });

  const n = 32;
  const d = 12;
  const fresh = () => f32(randn(1, n * d, 2, 3));
  const gamma = f32(randn(2, d, 1, 0.2));
  const beta = f32(randn(3, d));
  const dout = f32(randn(4, n * d));

  test("the cache refers to x and the gradient is the one of a copy", () => {
    const x = fresh();
    const { cache } = batchnormForward(x, gamma, beta, { mode: "train" });
    expect(cache.x).toBe(x);
    const want = batchnormBackwardAlt(dout, batchnormForward(f32(x), gamma, beta, { mode: "train" }).cache);
    expect(batchnormBackwardAlt(dout, cache)).toEqual(want);
  });

  const changes: [string, (x: Float32Array) => void][] = [
    ["one element changed by one ulp", (x) => void (x[77] = Math.fround(x[77] * (1 + 2 ** -23)))],
    ["two rows swapped", (x) => {
      const a = x.slice(3 * d, 4 * d);
      x.copyWithin(3 * d, 20 * d, 21 * d);
      x.set(a, 20 * d);
    }],
    ["the rows shuffled", (x) => {
      const rows = Array.from({ length: n }, (_, r) => x.slice(r * d, (r + 1) * d));
      rows.reverse().forEach((row, r) => x.set(row, r * d));
    }],
    ["a refill with new data", (x) => x.set(f32(randn(9, n * d, 2, 3)))],
  ];
  test.each(changes)("a backward refuses x after %s", (_, change) => {
    const x = fresh();
    const { cache } = batchnormForward(x, gamma, beta, { mode: "train" });
    change(x);
    const dx = new Float32Array(n * d).fill(7);
    expect(() => batchnormBackward(dout, cache, { dx })).toThrow(/x was changed after the forward/);
    expect(() => batchnormBackwardAlt(dout, cache)).toThrow(/x was changed after the forward/);
    expect(dx.every((v) => v === 7)).toBe(true);
  });

  test("spatial: a changed element is refused", () => {
    const shape = [4, 3, 5, 2];
    const x = f32(randn(5, 120));
    const { cache } = spatialBatchnormForward(x, f32([1, 2, 3]), f32([0, 0, 0]), { mode: "train" }, shape);
    x[119] += 1;
    expect(() => spatialBatchnormBackward(f32(randn(6, 120)), cache)).toThrow(/x was changed/);
  });

  test("a workspace view as x is copied into the cache: later use of the workspace does not matter", () => {
    const ws = new BatchNorm(d).workspace(n);
    ws.x.set(fresh());
    const copy = f32(ws.x);
    const { cache } = batchnormForward(ws.x, gamma, beta, { mode: "train" });
    ws.x.fill(0);
    expect(cache.x).toEqual(copy);
    expect(batchnormBackwardAlt(dout, cache).dx).toEqual(batchnormBackwardAlt(dout, batchnormForward(copy, gamma, beta, { mode: "train" }).cache).dx);
    ws.dispose();
  });

  test("the layer's eval-mode backward refers to x: a change is refused, and it matches dout·γ·invStd", () => {
    const bn = new BatchNorm(d);
    bn.gamma.set(gamma);
    bn.runningMean.set(f32(randn(7, d)));
    bn.runningVar.set(f32(randn(8, d, 2, 0.1)));
    bn.eval();
    const x = fresh();
    bn.forward(x);
    const dx = bn.backward(dout);
    for (let i = 0; i < n * d; i++) {
      const j = i % d;
      expect(dx[i]).toBeCloseTo((dout[i] * gamma[j]) / Math.sqrt(bn.runningVar[j] + bn.eps), 5);
    }
    const dgamma = new Float64Array(d);
    for (let i = 0; i < n * d; i++) dgamma[i % d] += (dout[i] * (x[i] - bn.runningMean[i % d])) / Math.sqrt(bn.runningVar[i % d] + bn.eps);
    bn.dgamma.forEach((v, j) => expect(v).toBeCloseTo(dgamma[j], 3));
    x[0] += 1;
    expect(() => bn.backward(dout)).toThrow(/x was changed/);
  });
});

test("the plain-JS checksum is the definition", () => {
  const words = Uint32Array.from({ length: 13 }, (_, i) => 0xfffffff0 + i);
  const state = new Uint32Array(8);
  reference.checksum(words, 0, state);
  expect(Array.from(state)).toEqual(fletcher(words));
});
