// Caller-provided outputs: the functional API and the layer write into the arrays given,
// return them, refuse a wrong type, length or an overlap with an input before anything runs,
// and give the same numbers as the allocating calls.
import { beforeEach, describe, expect, test } from "vitest";
import {
  type Backend, BatchNorm, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync, spatialBatchnormBackward,
  spatialBatchnormForward,
} from "../src/index.js";
import { expectIdentical, randn } from "./helpers.js";

const f32 = (values: ArrayLike<number>) => Float32Array.from(values);
const n = 40;
const d = 6;
const x = f32(randn(1, n * d, -2, 4));
const gamma = f32(randn(2, d, 1, 0.3));
const beta = f32(randn(3, d));
const dout = f32(randn(4, n * d));

describe.each(["simd", "scalar", "js"] as Backend[])("%s backend", (backend) => {
  beforeEach(() => {
    initSync({ backend });
  });

  test("forward and backward write into the given arrays and return them", () => {
    const want = batchnormForward(x, gamma, beta, { mode: "train" });
    const out = new Float32Array(n * d);
    const got = batchnormForward(x, gamma, beta, { mode: "train" }, { out });
    expect(got.out).toBe(out);
    expect(out).toEqual(want.out);
    const outputs = { dx: new Float32Array(n * d), dgamma: new Float32Array(d), dbeta: new Float32Array(d) };
    for (const backward of [batchnormBackward, batchnormBackwardAlt]) {
      const result = backward(dout, got.cache, outputs);
      expect(result.dx).toBe(outputs.dx);
      expect(result.dgamma).toBe(outputs.dgamma);
      expect(result).toEqual(backward(dout, want.cache));
    }
    const bnParam = { mode: "test" as const, runningMean: f32(randn(5, d)), runningVar: f32(randn(6, d, 2, 0.1)) };
    const testOut = new Float32Array(n * d);
    expect(batchnormForward(x, gamma, beta, bnParam, { out: testOut }).out).toBe(testOut);
    expect(testOut).toEqual(batchnormForward(x, gamma, beta, bnParam).out);
  });

  test("test mode in place (out is x) and dx in place of dout", () => {
    const bnParam = { mode: "test" as const, runningMean: f32(randn(5, d)), runningVar: f32(randn(6, d, 2, 0.1)) };
    const want = batchnormForward(x, gamma, beta, bnParam).out;
    const y = f32(x);
    batchnormForward(y, gamma, beta, bnParam, { out: y });
    expect(y).toEqual(want);
    const { cache } = batchnormForward(x, gamma, beta, { mode: "train" });
    const g = f32(dout);
    const wantDx = batchnormBackwardAlt(dout, cache).dx;
    expect(batchnormBackwardAlt(g, cache, { dx: g }).dx).toEqual(wantDx);
  });

  test("spatial calls take outputs too", () => {
    const shape = [2, 3, 4, 5];
    const xs = f32(randn(7, 120));
    const g3 = f32([1, 0.5, 2]);
    const b3 = f32([0, 1, -1]);
    for (const layout of ["NCHW", "NHWC"] as const) {
      const out = new Float32Array(120);
      const { cache } = spatialBatchnormForward(xs, g3, b3, { mode: "train" }, shape, layout, { out });
      expect(out).toEqual(spatialBatchnormForward(xs, g3, b3, { mode: "train" }, shape, layout).out);
      const dx = new Float32Array(120);
      const dy = f32(randn(8, 120));
      expect(spatialBatchnormBackward(dy, cache, { dx }).dx).toBe(dx);
      expect(dx).toEqual(spatialBatchnormBackward(dy, cache).dx);
    }
  });

  test.each([
    ["out of the wrong length", () => ({ out: new Float32Array(n * d - 1) }), RangeError, /outputs.out must have length 240, got length 239/],
    ["out of the wrong type", () => ({ out: new Float64Array(n * d) }), TypeError, /outputs.out is a Float64Array but the input is a Float32Array/],
    ["out overlapping x in train mode", () => ({ out: x }), RangeError, /outputs.out shares memory with x/],
    ["an unknown key", () => ({ dx: new Float32Array(n * d) }), TypeError, /forward options has no option "dx"/],
  ] as const)("train forward: %s is refused and changes nothing", (_, outputs, type, message) => {
    const bnParam = { mode: "train" as const, runningMean: new Float32Array(d), runningVar: new Float32Array(d).fill(1) };
    const before = f32(x);
    expect(() => batchnormForward(x, gamma, beta, bnParam, outputs() as never)).toThrow(type);
    expect(() => batchnormForward(x, gamma, beta, bnParam, outputs() as never)).toThrow(message);
    expect(bnParam.runningMean.every((v) => v === 0)).toBe(true);
    expect(x).toEqual(before);
  });

  test("test mode: out overlapping part of x is refused, x itself is not", () => {
    const bnParam = { mode: "test" as const, runningMean: new Float32Array(d), runningVar: new Float32Array(d).fill(1) };
    const big = f32(randn(9, (n + 1) * d));
    const shifted = big.subarray(d);
    expect(() => batchnormForward(big.subarray(0, n * d), gamma, beta, bnParam, { out: shifted })).toThrow(/shares memory with x \(it may be that very array/);
    // gamma inside the memory of out.
    const memory = new Float32Array(n * d);
    const inside = memory.subarray(d, 2 * d);
    inside.set(gamma);
    expect(() => batchnormForward(x, inside, beta, bnParam, { out: memory })).toThrow(/outputs.out shares memory with gamma/);
    expect(inside).toEqual(gamma);
  });

  test("backward: outputs overlapping each other are refused before anything is written", () => {
    const { cache } = batchnormForward(x, gamma, beta, { mode: "train" });
    const shared = new Float32Array(n * d + d).fill(3);
    expect(() => batchnormBackward(dout, cache, { dx: shared.subarray(0, n * d), dgamma: shared.subarray(n * d - 1, n * d - 1 + d) }))
      .toThrow(/outputs.dgamma shares memory with outputs.dx/);
    const both = new Float32Array(d);
    expect(() => batchnormBackward(dout, cache, { dgamma: both, dbeta: both })).toThrow(/outputs.dbeta shares memory with outputs.dgamma/);
    expect(shared.every((v) => v === 3)).toBe(true);
    expect(() => batchnormBackward(dout, null)).toThrow(/got null \(a test-mode forward keeps no cache\)/);
  });

  test("the layer: forward(x, { shape, out }) and backward(dout, { dx }), train and eval", () => {
    const make = () => {
      const bn = new BatchNorm(3, { layout: "NHWC" });
      bn.gamma.set([1, 2, 0.5]);
      return bn;
    };
    const shape = [2, 3, 4, 5];
    const xs = f32(randn(10, 120, 1, 2));
    const dy = f32(randn(11, 120));
    const a = make();
    const b = make();
    const out = new Float32Array(120);
    expect(b.forward(xs, { shape, out })).toBe(out);
    expect(out).toEqual(a.forward(xs, shape));
    const dx = new Float32Array(120);
    expect(b.backward(dy, { dx })).toBe(dx);
    expect(dx).toEqual(a.backward(dy));
    expect(b.dgamma).toEqual(a.dgamma);
    a.eval();
    b.eval();
    expect(b.forward(xs, { shape, out })).toEqual(a.forward(xs, shape));
    expect(b.backward(dy, { dx: dy.slice() })).toEqual(a.backward(dy));
    // In place: the batch itself as out (train mode copies x in first).
    b.train();
    const y = f32(xs);
    expect(b.forward(y, { shape, out: y })).toEqual(make().forward(xs, shape));
    expect(() => b.forward(xs, { shape, out: b.runningMean as never })).toThrow(RangeError);
    expect(() => b.forward(xs, { shape, out: new Float32Array(120), extra: 1 } as never)).toThrow(/forward options has no option "extra"/);
  });

  test("the layer's eval forward goes through a large batch in parts: the memory stays small", async () => {
    const { engine } = await import("../src/wasm.js");
    const bn = new BatchNorm(256).eval();
    const big = f32(randn(12, 4096 * 256));
    const before = engine().heap.memory.buffer.byteLength;
    const out = bn.forward(big);
    expect(engine().heap.memory.buffer.byteLength - before).toBeLessThan(2 ** 20);
    const want = batchnormForward(big, bn.gamma, bn.beta, { mode: "test", runningMean: bn.runningMean, runningVar: bn.runningVar }).out;
    expectIdentical(out, want);
  });
});
