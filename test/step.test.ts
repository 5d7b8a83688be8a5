// The step runner's order (src/step.ts): validate, reserve, derive views, copy in, run, write
// back. Each test is a hole that calls doing their steps in another order had.
import { beforeEach, describe, expect, test } from "vitest";
import { type Backend, BatchNorm, batchnormBackward, batchnormForward, initSync } from "../src/index.js";
import { engine } from "../src/wasm.js";
import { randn } from "./helpers.js";

const f32 = (values: ArrayLike<number>) => Float32Array.from(values);
const f64 = (values: ArrayLike<number>) => Float64Array.from(values);

/**
 * Fills the engine's memory up to `bytes` below its end, so that the next call that needs
 * more scratch than that must grow the memory. Returns the filler's address, to free.
 */
function leaveRoom(bytes: number): number {
  const { heap } = engine();
  const top = heap.scratch(0);
  const room = heap.buffer.byteLength - top;
  return room > bytes + 64 ? heap.alloc(room - bytes) : 0;
}

/** Runs `call` and says whether it grew (and so detached) the engine's memory. */
function grows<T>(call: () => T): { result: T; grew: boolean } {
  const before = engine().heap.memory.buffer;
  const result = call();
  return { result, grew: engine().heap.memory.buffer !== before };
}

// The 'js' backend's memory is a resizable ArrayBuffer: its views are never detached.
describe.each(["simd", "scalar"] as Backend[])("%s backend", (backend) => {
  beforeEach(() => {
    initSync({ backend });
  });

  test("a workspace view as the input of a train call that grows the memory", () => {
    const d = 64;
    const ws = new BatchNorm(d).workspace(4096);
    ws.x.set(randn(1, 4096 * d, 3, 2));
    const copy = f32(ws.x);
    const gamma = f32(randn(2, d, 1, 0.3));
    const beta = f32(randn(3, d));
    const filler = leaveRoom(1024);
    const { result, grew } = grows(() => batchnormForward(ws.x, gamma, beta, { mode: "train" }));
    expect(grew).toBe(true);
    const want = batchnormForward(copy, gamma, beta, { mode: "train" });
    expect(result.out).toEqual(want.out);
    expect(result.cache!.x).toEqual(copy);
    if (filler) engine().heap.free(filler);
    ws.dispose();
  });

  test("a small workspace view as the input of a test-mode call that grows the memory", () => {
    const d = 64;
    const ws = new BatchNorm(d).workspace(1);
    ws.x.set(randn(4, d));
    const copy = f32(ws.x);
    const gamma = f32(randn(5, d));
    const beta = f32(randn(6, d));
    const bnParam = { mode: "test" as const, runningMean: f32(randn(7, d, 0, 0.1)), runningVar: f32(randn(8, d, 2, 0.1)) };
    const filler = leaveRoom(256);
    const { result, grew } = grows(() => batchnormForward(ws.x, gamma, beta, bnParam));
    expect(grew).toBe(true);
    expect(result.out.every(Number.isFinite)).toBe(true);
    expect(result.out).toEqual(batchnormForward(copy, gamma, beta, bnParam).out);
    if (filler) engine().heap.free(filler);
    ws.dispose();
  });

  test("one layer's live output as the input of another layer's first forward", () => {
    const first = new BatchNorm(32);
    const ws = first.workspace(512);
    ws.x.set(randn(9, 512 * 32, -1, 3));
    const y = ws.forward();
    const copy = f32(y);
    const second = new BatchNorm(32);
    const filler = leaveRoom(1024);
    const { result, grew } = grows(() => second.forward(y));
    expect(grew).toBe(true);
    expect(result).toEqual(new BatchNorm(32).forward(copy));
    if (filler) engine().heap.free(filler);
    ws.dispose();
  });
});

describe.each(["simd", "scalar", "js"] as Backend[])("%s backend", (backend) => {
  beforeEach(() => {
    initSync({ backend });
  });

  const d = 5;
  const x1 = f32(randn(10, 8 * d, 2, 3));
  const x2 = f32(randn(11, 8 * d, -4, 0.5));
  const dout = f32(randn(12, 8 * d));

  /** dx and the state of a layer that saw x1 only. */
  function afterX1(make: () => BatchNorm) {
    const bn = make();
    bn.forward(x1);
    return { dx: bn.backward(dout), dgamma: f32(bn.dgamma), runningMean: f32(bn.runningMean), batches: bn.numBatchesTracked };
  }

  type Change = (bn: BatchNorm) => void;
  const spoilings: [string, Change, Change][] = [
    ["a negative eps", (bn) => void (bn.eps = -1), (bn) => void (bn.eps = 1e-5)],
    ["a gamma of the wrong length", (bn) => void (bn.gamma = new Float32Array(3)), (bn) => void (bn.gamma = new Float32Array(d).fill(1))],
  ];
  test.each(spoilings)("a forward refused for %s changes nothing", (_, spoil, mend) => {
    const want = afterX1(() => new BatchNorm(d));
    const bn = new BatchNorm(d);
    bn.forward(x1);
    spoil(bn);
    expect(() => bn.forward(x2)).toThrow(RangeError);
    mend(bn);
    expect(bn.numBatchesTracked).toBe(want.batches);
    expect(bn.runningMean).toEqual(want.runningMean);
    expect(bn.backward(dout)).toEqual(want.dx);
    expect(bn.dgamma).toEqual(want.dgamma);
  });

  test("a PyTorch layer's refused one-value batch of another shape keeps the last forward", () => {
    const make = () => BatchNorm.fromPyTorch({ num_features: d });
    const want = afterX1(make);
    const bn = make();
    bn.forward(x1);
    expect(() => bn.forward(f32(randn(13, d)))).toThrow(/Expected more than 1 value per channel/);
    expect(bn.backward(dout)).toEqual(want.dx);
    expect(bn.runningMean).toEqual(want.runningMean);
  });

  test("without running statistics, a PyTorch layer refuses one value per channel in train and eval mode", () => {
    const bn = BatchNorm.fromPyTorch({ num_features: 3, track_running_stats: false });
    const one = f32([1, 2, 3]);
    expect(() => bn.forward(one)).toThrow(/Expected more than 1 value per channel when training, got input size \[1, 3\]/);
    bn.eval();
    expect(() => bn.forward(one)).toThrow(/Expected more than 1 value per channel when training/);
    expect(() => bn.forward(f32([1, 2, 3, 5, 7, 11]), [1, 3, 2])).not.toThrow();
  });

  test("float64, N = 1: both backward forms give dx = 0 exactly", () => {
    const x = f64(randn(14, 7, 1e3, 5));
    const gamma = f64(randn(15, 7));
    const { cache } = batchnormForward(x, gamma, f64(randn(16, 7)), { mode: "train" });
    const dy = f64(randn(17, 7));
    const { dx } = batchnormBackward(dy, cache!);
    expect(dx.every((v) => v === 0), `dx = ${dx}`).toBe(true);
  });

  test("a block that cannot fit in memory is refused with a RangeError, before anything is allocated", () => {
    const { heap } = engine();
    const allocated = heap.allocatedBytes;
    expect(() => new BatchNorm(1_000_000).workspace(1500)).toThrow(/cannot allocate .* bytes/);
    expect(heap.allocatedBytes).toBe(allocated);
  });
});

describe("work areas", () => {
  test("one row of 9,586,981 float32 features in train mode: out = beta", () => {
    initSync({ backend: "simd" });
    const d = 9_586_981;
    const x = new Float32Array(d);
    const beta = new Float32Array(d);
    for (let i = 0; i < d; i++) (x[i] = (i % 101) - 50), (beta[i] = (i % 7) * 0.25);
    const { out } = batchnormForward(x, new Float32Array(d).fill(2), beta, { mode: "train" });
    let wrong = 0;
    for (let i = 0; i < d; i++) if (out[i] !== beta[i]) wrong++;
    expect(out.length).toBe(d);
    expect(wrong).toBe(0);
  });

  test.each(["simd", "scalar"] as Backend[])("%s: test mode on (64, 2047) float32 grows the memory by under a megabyte", (backend) => {
    initSync({ backend });
    const d = 2047;
    const filler = leaveRoom(0);
    const before = engine().heap.memory.buffer.byteLength;
    const bnParam = { mode: "test" as const, runningMean: new Float32Array(d), runningVar: new Float32Array(d).fill(1) };
    batchnormForward(f32(randn(18, 64 * d)), new Float32Array(d).fill(1), new Float32Array(d), bnParam);
    expect(engine().heap.memory.buffer.byteLength - before).toBeLessThan(2 ** 20);
    if (filler) engine().heap.free(filler);
  });
});
