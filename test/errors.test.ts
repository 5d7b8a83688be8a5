// Bad input gets a clear error that names the argument; nothing is changed by a failed call
// and the module still gives correct results afterwards.
import { beforeEach, describe, expect, test } from "vitest";
import {
  type Backend, BatchNorm, batchnormBackward, batchnormBackwardAlt, batchnormForward, init, initSync,
} from "../src/index.js";
import { expectClose, fixtures, tolerance, typed } from "./helpers.js";

const c = fixtures.cases.find((k) => k.name === "float32 4x5")!;
const x = () => typed("float32", c.x);
const gamma = () => typed("float32", c.gamma);
const beta = () => typed("float32", c.beta);

function expectStillCorrect() {
  const { out } = batchnormForward(x(), gamma(), beta(), { mode: "train", eps: c.eps });
  expectClose(out, c.out, tolerance("float32").abs, "out after an error");
}

describe.each(["simd", "scalar", "js"] as Backend[])("%s backend", (backend) => {
  beforeEach(() => {
    initSync({ backend });
  });

  const f32 = (n: number) => new Float32Array(n);
  const forwardCases: [string, () => unknown, ErrorConstructor, RegExp][] = [
    ["x is a plain Array", () => batchnormForward([1, 2, 3] as never, gamma(), beta(), { mode: "train" }), TypeError, /^x must be a Float32Array or Float64Array, got an Array/],
    ["x is an Int32Array", () => batchnormForward(new Int32Array(10) as never, gamma(), beta(), { mode: "train" }), TypeError, /x must be a Float32Array or Float64Array, got an Int32Array/],
    ["x is null", () => batchnormForward(null as never, gamma(), beta(), { mode: "train" }), TypeError, /x must be .* got null/],
    ["x length not a multiple of D", () => batchnormForward(f32(21), gamma(), beta(), { mode: "train" }), RangeError, /x must have a positive multiple of D = 5 values .* got length 21/],
    ["x empty", () => batchnormForward(f32(0), gamma(), beta(), { mode: "train" }), RangeError, /^x is empty: it must have N·D values$/],
    ["gamma empty", () => batchnormForward(x(), f32(0), f32(0), { mode: "train" }), RangeError, /^gamma is empty: it must have D values, one per feature$/],
    ["gamma is an Array", () => batchnormForward(x(), [1, 1, 1, 1, 1] as never, beta(), { mode: "train" }), TypeError, /gamma must be a Float32Array/],
    ["beta of the wrong length", () => batchnormForward(x(), gamma(), f32(4), { mode: "train" }), RangeError, /gamma and beta must have one value per feature, D each: gamma has length 5, beta 4/],
    ["gamma float64 with x float32", () => batchnormForward(x(), new Float64Array(5) as never, beta(), { mode: "train" }), TypeError, /gamma is a Float64Array but the input is a Float32Array; float32 and float64 are never mixed/],
    ["x float64 with gamma float32", () => batchnormForward(new Float64Array(20) as never, gamma(), beta(), { mode: "train" }), TypeError, /gamma is a Float32Array but the input is a Float64Array/],
    ["bnParam missing", () => batchnormForward(x(), gamma(), beta(), undefined as never), TypeError, /bnParam must be an object/],
    ["mode 'eval'", () => batchnormForward(x(), gamma(), beta(), { mode: "eval" as never }), RangeError, /bnParam.mode must be 'train' or 'test', got "eval"/],
    ["mode missing", () => batchnormForward(x(), gamma(), beta(), {} as never), RangeError, /bnParam.mode must be 'train' or 'test', got undefined/],
    ["eps negative", () => batchnormForward(x(), gamma(), beta(), { mode: "train", eps: -1e-5 }), RangeError, /bnParam.eps must be a finite number ≥ 0, got -0.00001/],
    ["eps NaN", () => batchnormForward(x(), gamma(), beta(), { mode: "train", eps: NaN }), RangeError, /bnParam.eps .* got NaN/],
    ["eps Infinity", () => batchnormForward(x(), gamma(), beta(), { mode: "train", eps: Infinity }), RangeError, /bnParam.eps .* got Infinity/],
    ["eps a string", () => batchnormForward(x(), gamma(), beta(), { mode: "train", eps: "1e-5" as never }), RangeError, /bnParam.eps must be a finite number ≥ 0, got "1e-5"/],
    ["momentum a string", () => batchnormForward(x(), gamma(), beta(), { mode: "train", momentum: "0.9" as never }), RangeError, /bnParam.momentum must be a number in \[0, 1\], got "0.9"/],
    ["numBatchesTracked a string", () => batchnormForward(x(), gamma(), beta(), { mode: "train", numBatchesTracked: "3" as never }), RangeError, /got "3"/],
    ["bnParam in Python's names", () => batchnormForward(x(), gamma(), beta(), { mode: "train", running_mean: f32(5) } as never), TypeError, /^bnParam has no option "running_mean" \(did you mean 'runningMean'\?\); its options are mode, eps, momentum/],
    ["a misspelt bnParam key", () => batchnormForward(x(), gamma(), beta(), { mode: "train", momentun: 0.5 } as never), TypeError, /bnParam has no option "momentun" \(did you mean 'momentum'\?\)/],
    ["an unknown bnParam key", () => batchnormForward(x(), gamma(), beta(), { mode: "test", training: false } as never), TypeError, /bnParam has no option "training"; its options are/],
    ["momentum above 1", () => batchnormForward(x(), gamma(), beta(), { mode: "train", momentum: 1.5 }), RangeError, /bnParam.momentum must be a number in \[0, 1\], got 1.5/],
    ["momentum negative", () => batchnormForward(x(), gamma(), beta(), { mode: "train", momentum: -0.1 }), RangeError, /bnParam.momentum/],
    ["momentum NaN", () => batchnormForward(x(), gamma(), beta(), { mode: "train", momentum: NaN }), RangeError, /bnParam.momentum .* got NaN/],
    ["runningMean of the wrong length", () => batchnormForward(x(), gamma(), beta(), { mode: "train", runningMean: f32(3) }), RangeError, /bnParam.runningMean must have length 5/],
    ["runningVar float64", () => batchnormForward(x(), gamma(), beta(), { mode: "train", runningVar: new Float64Array(5) as never }), TypeError, /bnParam.runningVar is a Float64Array/],
    ["test mode without running statistics", () => batchnormForward(x(), gamma(), beta(), { mode: "test" }), TypeError, /required in test mode/],
  ];

  test.each(forwardCases)("forward: %s", (_, call, type, message) => {
    expect(call).toThrow(type);
    expect(call).toThrow(message);
    expectStillCorrect();
  });

  test("a failed call leaves bnParam and its running statistics untouched", () => {
    const runningMean = typed("float32", [1, 2, 3, 4, 5]);
    const bnParam = { mode: "train" as const, runningMean, runningVar: f32(4) };
    expect(() => batchnormForward(x(), gamma(), beta(), bnParam)).toThrow(/bnParam.runningVar must have length 5/);
    expect(Array.from(runningMean)).toEqual([1, 2, 3, 4, 5]);
    const fresh = { mode: "train" as const, momentum: 2 };
    expect(() => batchnormForward(x(), gamma(), beta(), fresh)).toThrow(RangeError);
    expect(fresh).toEqual({ mode: "train", momentum: 2 });
  });

  test("a frozen or sealed bnParam that a train call must write to is refused before anything changes", () => {
    expect(() => batchnormForward(x(), gamma(), beta(), Object.freeze({ mode: "train" as const })))
      .toThrow(/bnParam.runningMean cannot be set \(is bnParam frozen or sealed\?\)/);
    const runningMean = typed("float32", [1, 2, 3, 4, 5]);
    const runningVar = typed("float32", [1, 1, 1, 1, 1]);
    // momentum null counts batches in bnParam.numBatchesTracked, which a sealed object cannot take.
    const sealed = Object.seal({ mode: "train" as const, momentum: null, runningMean, runningVar });
    expect(() => batchnormForward(x(), gamma(), beta(), sealed)).toThrow(/bnParam.numBatchesTracked cannot be set/);
    expect(Array.from(runningMean)).toEqual([1, 2, 3, 4, 5]);
    expect(Array.from(runningVar)).toEqual([1, 1, 1, 1, 1]);
    // Frozen with its arrays in place and nothing to add: the arrays are updated in place.
    const frozen = Object.freeze({ mode: "train" as const, momentum: 0.5, runningMean, runningVar });
    batchnormForward(x(), gamma(), beta(), frozen);
    expect(runningMean[0]).not.toBe(1);
    expectStillCorrect();
  });

  test.each([
    ["graph", batchnormBackward],
    ["compact", batchnormBackwardAlt],
  ] as const)("backward (%s form): bad cache or dout", (_, backwardFn) => {
    const { cache } = batchnormForward(x(), gamma(), beta(), { mode: "train" });
    expect(() => backwardFn(f32(20), null as never)).toThrow(/cache must be the cache returned by a train-mode forward, got null/);
    expect(() => backwardFn(f32(20), { ...cache! } as never)).toThrow(TypeError);
    expect(() => backwardFn(f32(24), cache!)).toThrow(/dout must have length 20 \(N = 4 by D = 5, the shape of the cached forward\), got length 24/);
    expect(() => backwardFn(new Float64Array(20) as never, cache!)).toThrow(/dout is a Float64Array but the input is a Float32Array/);
    const other = batchnormForward(new Float32Array(6 * 5).map(Math.random), gamma(), beta(), { mode: "train" });
    expect(() => backwardFn(typed("float32", c.dout), other.cache!)).toThrow(/dout must have length 30/);
    expectStillCorrect();
  });

  test("layer: bad construction, bad input, replaced parameters of the wrong shape", () => {
    expect(() => new BatchNorm(0)).toThrow(/numFeatures must be a positive integer, got 0/);
    expect(() => new BatchNorm(2.5)).toThrow(RangeError);
    expect(() => new BatchNorm(3, { dtype: "int8" as never })).toThrow(/options.dtype must be 'float32' or 'float64', got "int8"/);
    expect(() => new BatchNorm(3, { momentum: 2 })).toThrow(/options.momentum/);
    expect(() => new BatchNorm(3, { eps: -1 })).toThrow(/options.eps/);
    expect(() => new BatchNorm(3, { momentun: 0.5 } as never)).toThrow(/^BatchNorm options has no option "momentun" \(did you mean 'momentum'\?\)/);
    expect(() => new BatchNorm(3, { track_running_stats: false } as never)).toThrow(/did you mean 'trackRunningStats'/);
    expect(() => BatchNorm.fromKeras(3, { eps: 1e-3 } as never)).toThrow(/fromKeras options has no option "eps" \(did you mean 'epsilon'\?\)/);
    expect(() => BatchNorm.fromKeras(3, { beta_initializer: "zeros" } as never)).toThrow(/fromKeras options has no option "beta_initializer"; its options are axis, momentum/);
    expect(() => BatchNorm.fromPyTorch({ numFeatures: 3 } as never)).toThrow(/did you mean 'num_features'/);
    expect(() => BatchNorm.fromKeras(3, { axis: "1" as never })).toThrow(/axis must be -1 \(channels last\) or 1 \(channels first\), got "1"/);
    const bn = new BatchNorm(5);
    expect(() => bn.backward(f32(20))).toThrow(/needs a forward first/);
    expect(() => bn.forward(f32(7))).toThrow(/x must have a positive multiple of D = 5/);
    expect(() => bn.forward(new Float64Array(10) as never)).toThrow(/^this layer is float32: x must be a Float32Array, got a Float64Array$/);
    bn.forward(x());
    expect(() => bn.backward(f32(15))).toThrow(/dout must have length 20/);
    const keep = bn.gamma;
    bn.gamma = f32(4);
    expect(() => bn.forward(x())).toThrow(/layer.gamma must have length 5/);
    bn.gamma = keep;
    bn.momentum = NaN;
    expect(() => bn.forward(x())).toThrow(/layer.momentum/);
    bn.momentum = 0.9;
    expect(() => bn.workspace(0)).toThrow(/batchSize must be a positive integer/);
    const ws = bn.workspace(4);
    expect(() => ws.backward()).toThrow(/needs a forward\(\) first/);
    expect(() => ws.backward({ form: "fast" as never })).toThrow(/options.form must be 'compact' or 'graph', got "fast"/);
    expect(() => ws.backward({ from: "graph" } as never)).toThrow(/backward options has no option "from" \(did you mean 'form'\?\)/);
    expect(() => ws.backward(null as never)).toThrow(/backward options must be an object/);
    bn.gamma.set(c.gamma);
    bn.beta.set(c.beta);
    bn.eps = c.eps;
    ws.x.set(c.x);
    expectClose(ws.forward(), c.out, tolerance("float32").abs, "workspace after errors");
    ws.dispose();
  });

  /** The message of what `call` throws, to compare whole. */
  function messageOf(call: () => unknown): string {
    try {
      call();
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error("the call did not throw");
  }

  test("a float64 layer fed float32 data names the layer's dtype", () => {
    const bn = new BatchNorm(5, { dtype: "float64" });
    expect(messageOf(() => bn.forward(x() as never))).toBe("this layer is float64: x must be a Float64Array, got a Float32Array");
    bn.forward(typed("float64", c.x));
    expect(messageOf(() => bn.backward(f32(20) as never))).toBe("this layer is float64: dout must be a Float64Array, got a Float32Array");
    const bn32 = new BatchNorm(5);
    expect(messageOf(() => bn32.forward(new Float64Array(20) as never))).toBe("this layer is float32: x must be a Float32Array, got a Float64Array");
  });

  test("an empty x is called empty, not detached; a detached one detached", () => {
    expect(messageOf(() => batchnormForward(f32(0), gamma(), beta(), { mode: "train" }))).toBe("x is empty: it must have N·D values");
    expect(messageOf(() => new BatchNorm(5).forward(f32(0)))).toBe("x is empty: it must have N·D values");
    const held = f32(20);
    structuredClone(held.buffer, { transfer: [held.buffer] });
    expect(messageOf(() => batchnormForward(held, gamma(), beta(), { mode: "train" }))).toBe(
      "x is a detached array (a view of WebAssembly memory is detached when the memory grows: take a fresh view after each call)",
    );
    expectStillCorrect();
  });

  test("a batch too large for 4 GiB of memory is refused, and the module still works", () => {
    const bn = new BatchNorm(8);
    expect(() => bn.workspace(2 ** 28)).toThrow(/cannot allocate \d+ bytes: the module's memory would exceed 4 GiB/);
    expectStillCorrect();
    bn.gamma.fill(2);
    expectClose(bn.forward(typed("float32", [1, 2, 3, 4, 5, 6, 7, 8, 3, 4, 5, 6, 7, 8, 9, 10])), [-2, -2, -2, -2, -2, -2, -2, -2, 2, 2, 2, 2, 2, 2, 2, 2].map((v) => v / Math.sqrt(1 + 1e-5)), 1e-6);
  });
});

test("init: unknown backend or options are refused", async () => {
  await expect(init({ backend: "gpu" as never })).rejects.toThrow(/backend must be 'simd', 'scalar' or 'js', got "gpu"/);
  expect(() => initSync(42 as never)).toThrow(/options must be an object/);
  expect(() => initSync({ backends: "js" } as never)).toThrow(/init options has no option "backends" \(did you mean 'backend'\?\)/);
  expect(await init()).toBe("simd");
  expect(await init({ backend: "scalar" })).toBe("scalar");
});

describe("the row functions check a stated shape", () => {
  const twelve = () => Float32Array.from({ length: 12 }, (_, i) => Math.cos(i) * 3 + i);
  const three = (v: number) => new Float32Array(3).fill(v);

  test("x of 12 values meant as (3, 4) with gamma and beta of 3 is refused, bnParam untouched", () => {
    const bnParam: { mode: "train"; runningMean?: Float32Array } = { mode: "train" };
    expect(() => batchnormForward(twelve(), three(1), three(0), bnParam, { shape: [3, 4] })).toThrow(
      new RangeError("shape[1] must be the number of channels, 3 (gamma.length), got 4"),
    );
    expect(bnParam.runningMean).toBeUndefined();
  });

  test("a shape whose product is not x.length, or not [N, D], is refused", () => {
    expect(() => batchnormForward(twelve(), three(1), three(0), { mode: "train" }, { shape: [5, 3] })).toThrow(/x must have 15 values for shape \[5, 3\], got length 12/);
    expect(() => batchnormForward(twelve(), three(1), three(0), { mode: "train" }, { shape: [2, 3, 2] })).toThrow(/options.shape must be \[N, D\]/);
    expect(() => batchnormForward(twelve(), three(1), three(0), { mode: "train" }, { shape: [4, 3], outt: 1 } as never)).toThrow(/outt/);
  });

  test("the right shape gives the same result as none; with out given, out is written", () => {
    // Column 0 of the (4, 3) rows normalized by hand in float64.
    const x = twelve();
    const col = [0, 3, 6, 9].map((i) => x[i]);
    const mean = col.reduce((a, b) => a + b) / 4;
    const variance = col.reduce((a, b) => a + (b - mean) ** 2, 0) / 4;
    const out = new Float32Array(12);
    const result = batchnormForward(x, three(1), three(0), { mode: "train" }, { shape: [4, 3], out });
    expect(result.out).toBe(out);
    [0, 1, 2, 3].forEach((r) => expect(out[3 * r]).toBeCloseTo((col[r] - mean) / Math.sqrt(variance + 1e-5), 5));
    expect(Array.from(batchnormForward(x, three(1), three(0), { mode: "train" }).out)).toEqual(Array.from(out));
  });
});
