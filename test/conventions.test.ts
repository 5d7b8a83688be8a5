// Spatial batch norm and the conventions of PyTorch and Keras, against fixtures from
// PyTorch itself and from numpy (scripts/make_torch_fixtures.py).
import { describe, expect, test } from "vitest";
import pytorch from "./fixtures/pytorch.json" with { type: "json" };
import { type Backend, BatchNorm, type BNParam, initSync, spatialBatchnormBackward, spatialBatchnormForward } from "../src/index.js";
import { expectClose, expectRelClose, maxAbs } from "./helpers.js";

interface Step { x: number[]; dout: number[]; out: number[]; dx: number[]; dweight?: number[]; dbias?: number[]; runningMean?: number[]; runningVar?: number[] }
interface TorchCase {
  name: string; shape: number[]; eps: number; momentum: number | null; affine: boolean; trackRunningStats: boolean;
  initialState: Record<string, number[] | number>; finalState: Record<string, number[] | number>; steps: Step[]; eval: Step;
}
interface KerasCase {
  name: string; shape: number[]; momentum: number; epsilon: number; gamma: number[]; beta: number[];
  steps: { x: number[]; out: number[]; movingMean: number[]; movingVariance: number[] }[]; eval: { x: number[]; out: number[] };
}
const fixtures = pytorch as unknown as { cases: TorchCase[]; keras: KerasCase[] };

const spatialCases = fixtures.cases.filter((c) => c.shape.length > 2 && c.affine && c.trackRunningStats && c.momentum !== null);
const f32 = (v: ArrayLike<number>) => Float32Array.from(v);
const OUT = 5e-5;
const GRAD = 2e-5;

/** (N, C, S) channels first → (N, S, C) channels last. */
function toChannelsLast(v: ArrayLike<number>, shape: number[]): Float32Array {
  const [n, c] = shape;
  const s = shape.slice(2).reduce((a, b) => a * b, 1);
  const out = new Float32Array(v.length);
  for (let i = 0; i < n; i++) for (let j = 0; j < c; j++) for (let k = 0; k < s; k++) out[(i * s + k) * c + j] = v[(i * c + j) * s + k];
  return out;
}

describe.each(["simd", "scalar", "js"] as Backend[])("%s backend", (backend) => {
  describe.each(fixtures.cases)("PyTorch $name", (c) => {
    test("BatchNorm.fromPyTorch: train steps, running statistics, eval forward and backward, state dict", () => {
      initSync({ backend });
      const bn = BatchNorm.fromPyTorch({ num_features: c.shape[1], eps: c.eps, momentum: c.momentum, affine: c.affine, track_running_stats: c.trackRunningStats });
      bn.loadStateDict(c.initialState);
      for (const [k, step] of c.steps.entries()) {
        const what = `step ${k + 1}`;
        expectClose(bn.forward(f32(step.x), c.shape), step.out, OUT, `${what} out`);
        expectRelClose(bn.backward(f32(step.dout)), step.dx, GRAD, `${what} dx`);
        if (step.dweight) {
          expectRelClose(bn.dgamma, step.dweight, GRAD, `${what} dweight`);
          expectRelClose(bn.dbeta, step.dbias!, GRAD, `${what} dbias`);
        }
        if (step.runningMean) {
          expectRelClose(bn.runningMean, step.runningMean, GRAD, `${what} running_mean`);
          expectRelClose(bn.runningVar, step.runningVar!, GRAD, `${what} running_var`);
        }
      }
      bn.eval();
      expectClose(bn.forward(f32(c.eval.x), c.shape), c.eval.out, OUT, "eval out");
      expectRelClose(bn.backward(f32(c.eval.dout)), c.eval.dx, GRAD, "eval dx");
      if (c.eval.dweight) {
        expectRelClose(bn.dgamma, c.eval.dweight, GRAD, "eval dweight");
        expectRelClose(bn.dbeta, c.eval.dbias!, GRAD, "eval dbias");
      }
      const state = bn.stateDict() as Record<string, number[] | number>;
      expect(Object.keys(state).sort()).toEqual(Object.keys(c.finalState).sort());
      for (const [key, value] of Object.entries(c.finalState)) {
        if (typeof value === "number") expect(state[key], key).toBe(value);
        else expectRelClose(state[key] as number[], value, GRAD, key);
      }
      // Round trip through JSON into a fresh layer: same eval output.
      const copy = BatchNorm.fromPyTorch({ num_features: c.shape[1], eps: c.eps, momentum: c.momentum, affine: c.affine, track_running_stats: c.trackRunningStats });
      copy.loadStateDict(JSON.parse(JSON.stringify(state))).eval();
      expect(copy.forward(f32(c.eval.x), c.shape)).toEqual(bn.forward(f32(c.eval.x), c.shape));
    });
  });

  describe.each(spatialCases)("PyTorch $name", (c) => {
    test("spatialBatchnormForward/Backward in NCHW and NHWC with PyTorch's conventions", () => {
        initSync({ backend });
        for (const layout of ["NCHW", "NHWC"] as const) {
          const last = layout === "NHWC";
          const arrange = (v: number[]) => (last ? toChannelsLast(v, c.shape) : f32(v));
          const channels = c.shape[1];
          const bnParam: BNParam<Float32Array> = {
            mode: "train", eps: c.eps, momentum: c.momentum!, momentumConvention: "pytorch", runningVariance: "unbiased",
            runningMean: f32(c.initialState.running_mean as number[]), runningVar: f32(c.initialState.running_var as number[]),
          };
          const gamma = f32(c.initialState.weight as number[]);
          const beta = f32(c.initialState.bias as number[]);
          for (const step of c.steps) {
            const { out, cache } = spatialBatchnormForward(arrange(step.x), gamma, beta, bnParam, c.shape, layout);
            expectClose(out, arrange(step.out), OUT, `${layout} out`);
            const grads = spatialBatchnormBackward(arrange(step.dout), cache!);
            expectRelClose(grads.dx, arrange(step.dx), GRAD, `${layout} dx`);
            expectRelClose(grads.dgamma, step.dweight!, GRAD, `${layout} dgamma`);
            expectRelClose(bnParam.runningVar!, step.runningVar!, GRAD, `${layout} running_var`);
          }
          expect(bnParam.runningMean!.length).toBe(channels);
          bnParam.mode = "test";
          expectClose(spatialBatchnormForward(arrange(c.eval.x), gamma, beta, bnParam, c.shape, layout).out, arrange(c.eval.out), OUT, `${layout} eval`);
        }
    });
  });

  describe.each(fixtures.keras)("$name", (k) => {
    test("BatchNorm.fromKeras: channels last, momentum 0.99-style, epsilon, moving statistics", () => {
      initSync({ backend });
      const channels = k.shape[k.shape.length - 1];
      // The logical shape is [N, C, ...spatial]; the data is stored channels last.
      const shape = [k.shape[0], channels, ...k.shape.slice(1, -1)];
      const bn = BatchNorm.fromKeras(channels, { momentum: k.momentum, epsilon: k.epsilon });
      expect(bn.layout).toBe("NHWC");
      bn.loadStateDict({ gamma: k.gamma, beta: k.beta, moving_mean: new Array(channels).fill(0), moving_variance: new Array(channels).fill(1) });
      for (const step of k.steps) {
        expectClose(bn.forward(f32(step.x), shape), step.out, OUT * Math.max(1, maxAbs(step.out)), "out");
        expectRelClose(bn.runningMean, step.movingMean, GRAD, "moving_mean");
        expectRelClose(bn.runningVar, step.movingVariance, GRAD, "moving_variance");
      }
      expectClose(bn.eval().forward(f32(k.eval.x), shape), k.eval.out, OUT * Math.max(1, maxAbs(k.eval.out)), "eval out");
      const state = bn.stateDict("keras");
      expect(Object.keys(state)).toEqual(["gamma", "beta", "moving_mean", "moving_variance"]);
    });
  });

  test("where PyTorch refuses one value per channel in training, so does fromPyTorch; CS231n mode keeps its answer", () => {
    initSync({ backend });
    const torchLike = BatchNorm.fromPyTorch({ num_features: 4 });
    expect(() => torchLike.forward(f32([1, 2, 3, 4]))).toThrow("Expected more than 1 value per channel when training, got input size [1, 4]");
    expect(torchLike.numBatchesTracked).toBe(0);
    expect(Array.from(torchLike.runningVar)).toEqual([1, 1, 1, 1]);
    expect(() => torchLike.forward(f32([1, 2, 3, 4]), [1, 4, 1, 1])).toThrow("got input size [1, 4, 1, 1]");
    const cs231n = new BatchNorm(4);
    cs231n.beta.set([0.5, -1, 2, 0]);
    expect(Array.from(cs231n.forward(f32([1, 2, 3, 4])))).toEqual([0.5, -1, 2, 0]);
    // One value per channel in each of several positions is fine for PyTorch too.
    expect(torchLike.forward(f32([1, 2, 3, 4, 5, 6, 7, 8]), [1, 4, 2])).toHaveLength(8);
  });

  test("loadStateDict checks everything and, on any error, leaves the layer as it was", () => {
    initSync({ backend });
    const bn = BatchNorm.fromPyTorch({ num_features: 3 });
    const good = { weight: [1, 2, 3], bias: [0, 0, 1], running_mean: [0.5, 0.5, 0.5], running_var: [2, 2, 2], num_batches_tracked: 7 };
    bn.loadStateDict(good);
    const before = JSON.stringify(bn.stateDict());
    const bad: [string, unknown, RegExp][] = [
      ["wrong length", { ...good, running_var: [1, 2] }, /state.running_var must be an array of 3 numbers/],
      ["not a number", { ...good, weight: [1, "2", 3] }, /state.weight\[1\] must be a number, got "2"/],
      ["negative variance", { ...good, running_var: [2, -1, 2] }, /state.running_var\[1\] must be a variance ≥ 0, got -1/],
      ["NaN variance", { ...good, running_var: [2, 2, NaN] }, /state.running_var\[2\] must be a variance ≥ 0, got NaN/],
      ["missing key", { weight: good.weight, bias: good.bias, running_mean: good.running_mean, num_batches_tracked: 1 }, /missing key\(s\) in state: running_var/],
      ["extra key", { ...good, momentum: 0.1 }, /unexpected key\(s\) in state: momentum/],
      ["bad counter", { ...good, num_batches_tracked: -1 }, /num_batches_tracked must be a whole number/],
      ["not an object", null, /state must be an object/],
    ];
    for (const [what, state, message] of bad) {
      expect(() => bn.loadStateDict(state as never), what).toThrow(message);
      expect(JSON.stringify(bn.stateDict()), what).toBe(before);
    }
    expect(bn.numBatchesTracked).toBe(7);
  });

  test("options: affine off has no gamma/beta state, tracking off normalizes with batch statistics in eval", () => {
    initSync({ backend });
    const plain = new BatchNorm(2, { affine: false, trackRunningStats: false });
    expect(plain.stateDict()).toEqual({});
    const x = f32([1, 10, 3, 20, 5, 60]);
    const trainOut = plain.forward(x);
    expect(plain.eval().forward(x)).toEqual(trainOut);
    expect(() => new BatchNorm(2, { momentumConvention: "keras" as never })).toThrow(/momentumConvention must be 'cs231n' or 'pytorch'/);
    expect(() => new BatchNorm(2, { runningVariance: "sample" as never })).toThrow(/runningVariance must be 'biased' or 'unbiased'/);
    expect(() => new BatchNorm(2, { layout: "CHWN" as never })).toThrow(/layout must be 'NCHW', 'NHWC', 'NCL' or 'NLC'/);
    expect(() => new BatchNorm(2, { affine: "yes" as never })).toThrow(/options.affine must be true or false/);
    expect(() => BatchNorm.fromKeras(2, { axis: 2 })).toThrow(/axis must be -1/);
    expect(() => new BatchNorm(2).forward(f32([1, 2, 3, 4]), [1, 3, 2])).toThrow(/shape\[1\] must be the number of channels, 2/);
    expect(() => new BatchNorm(2).forward(f32([1, 2, 3, 4]), [2, 2, 2])).toThrow(/x must have 8 values for shape \[2, 2, 2\]/);
    expect(() => spatialBatchnormForward(f32([1, 2]), f32([1]), f32([0]), { mode: "train" }, [2, 1, 1], "CHWN" as never)).toThrow(/layout must be/);
  });
});
