// foldBatchNorm: the folded layer computes the layer followed by the eval-mode batch norm.
// The layers (linear, dense, direct and transposed convolutions) and the eval-mode batch
// norm are plain float64 loops written here, not the package's code; PyTorch's own folding
// (fuse_linear_bn_eval, fuse_conv_bn_eval) is in test/fixtures/fold.json.
import { describe, expect, test } from "vitest";
import { BatchNorm, type BatchNormEvalState, foldBatchNorm, initSync, type WeightLayout } from "../src/index.js";
import fixtures from "./fixtures/fold.json" with { type: "json" };
import { expectRelClose, maxAbs, randn } from "./helpers.js";

const REL = 1e-12;

// ---- Reference layers, float64, row-major ------------------------------------------------

const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/** Every index of an array of shape dims, in row-major order. */
function grid(dims: readonly number[]): number[][] {
  let all: number[][] = [[]];
  for (const d of dims) all = all.flatMap((prefix) => Array.from({ length: d }, (_, i) => [...prefix, i]));
  return all;
}

/** The row-major offset of index in shape. */
function at(shape: readonly number[], index: readonly number[]): number {
  let offset = 0;
  for (let a = 0; a < shape.length; a++) offset = offset * shape[a] + index[a];
  return offset;
}

type Layer = (x: ArrayLike<number>, weight: ArrayLike<number>, bias: ArrayLike<number> | null) => Float64Array;

/** PyTorch Linear: y[n, o] = Σ_i W[o, i]·x[n, i] + b[o], W (out, in). */
function linear(n: number, inputs: number, outputs: number): Layer {
  return (x, w, b) => {
    const y = new Float64Array(n * outputs);
    for (let r = 0; r < n; r++) {
      for (let o = 0; o < outputs; o++) {
        let sum = b ? b[o] : 0;
        for (let i = 0; i < inputs; i++) sum += w[o * inputs + i] * x[r * inputs + i];
        y[r * outputs + o] = sum;
      }
    }
    return y;
  };
}

/** tfjs Dense: y[n, o] = Σ_i W[i, o]·x[n, i] + b[o], W (in, out). */
function dense(n: number, inputs: number, outputs: number): Layer {
  return (x, w, b) => {
    const y = new Float64Array(n * outputs);
    for (let r = 0; r < n; r++) {
      for (let o = 0; o < outputs; o++) {
        let sum = b ? b[o] : 0;
        for (let i = 0; i < inputs; i++) sum += w[i * outputs + o] * x[r * inputs + i];
        y[r * outputs + o] = sum;
      }
    }
    return y;
  };
}

interface ConvOptions { stride?: number[]; padding?: number[]; groups?: number }

/**
 * PyTorch Conv1d/2d/3d, by definition: x (N, Cin, ...spatial), W (Cout, Cin / groups, ...k),
 * y[n, o, p] = b[o] + Σ_{i in o's group, q} W[o, i, q]·x[n, group·Cin/groups + i, p·stride − padding + q].
 */
function conv(xShape: number[], wShape: number[], options: ConvOptions = {}): { layer: Layer; yShape: number[] } {
  const [N, , ...spatial] = xShape;
  const [outputs, perGroup, ...kernel] = wShape;
  const groups = options.groups ?? 1;
  const stride = options.stride ?? spatial.map(() => 1);
  const padding = options.padding ?? spatial.map(() => 0);
  const outSpatial = spatial.map((s, a) => Math.floor((s + 2 * padding[a] - kernel[a]) / stride[a]) + 1);
  const yShape = [N, outputs, ...outSpatial];
  const layer: Layer = (x, w, b) => {
    const y = new Float64Array(product(yShape));
    for (let n = 0; n < N; n++) {
      for (let o = 0; o < outputs; o++) {
        const group = Math.floor(o / (outputs / groups));
        for (const p of grid(outSpatial)) {
          let sum = b ? b[o] : 0;
          for (let i = 0; i < perGroup; i++) {
            for (const q of grid(kernel)) {
              const from = p.map((v, a) => v * stride[a] - padding[a] + q[a]);
              if (from.some((v, a) => v < 0 || v >= spatial[a])) continue;
              sum += w[at(wShape, [o, i, ...q])] * x[at(xShape, [n, group * perGroup + i, ...from])];
            }
          }
          y[at(yShape, [n, o, ...p])] = sum;
        }
      }
    }
    return y;
  };
  return { layer, yShape };
}

/**
 * PyTorch ConvTranspose1d/2d/3d, by definition: x (N, Cin, ...spatial), W (Cin, Cout / groups, ...k);
 * each x[n, i, p] adds x·W[i, j, q] to y[n, group(i)·Cout/groups + j, p·stride − padding + q].
 */
function convTranspose(xShape: number[], wShape: number[], options: ConvOptions = {}): { layer: Layer; yShape: number[] } {
  const [N, inputs, ...spatial] = xShape;
  const [, perGroup, ...kernel] = wShape;
  const groups = options.groups ?? 1;
  const outputs = perGroup * groups;
  const stride = options.stride ?? spatial.map(() => 1);
  const padding = options.padding ?? spatial.map(() => 0);
  const outSpatial = spatial.map((s, a) => (s - 1) * stride[a] - 2 * padding[a] + kernel[a]);
  const yShape = [N, outputs, ...outSpatial];
  const layer: Layer = (x, w, b) => {
    const y = new Float64Array(product(yShape));
    const S = product(outSpatial);
    for (let n = 0; n < N; n++) for (let o = 0; o < outputs; o++) y.fill(b ? b[o] : 0, (n * outputs + o) * S, (n * outputs + o + 1) * S);
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < inputs; i++) {
        const group = Math.floor(i / (inputs / groups));
        for (const p of grid(spatial)) {
          const xv = x[at(xShape, [n, i, ...p])];
          for (let j = 0; j < perGroup; j++) {
            for (const q of grid(kernel)) {
              const to = p.map((v, a) => v * stride[a] - padding[a] + q[a]);
              if (to.some((v, a) => v < 0 || v >= outSpatial[a])) continue;
              y[at(yShape, [n, group * perGroup + j, ...to])] += xv * w[at(wShape, [i, j, ...q])];
            }
          }
        }
      }
    }
    return y;
  };
  return { layer, yShape };
}

/** tfjs Conv2D, 'valid' padding, stride 1: x (N, H, W, Cin), W (kh, kw, Cin, Cout), y (N, H', W', Cout). */
function conv2dChannelsLast(xShape: number[], wShape: number[]): { layer: Layer; yShape: number[] } {
  const [N, H, W, inputs] = xShape;
  const [kh, kw, , outputs] = wShape;
  const yShape = [N, H - kh + 1, W - kw + 1, outputs];
  const layer: Layer = (x, w, b) => {
    const y = new Float64Array(product(yShape));
    for (const [n, h, v, o] of grid(yShape)) {
      let sum = b ? b[o] : 0;
      for (const [r, s, i] of grid([kh, kw, inputs])) sum += w[at(wShape, [r, s, i, o])] * x[at(xShape, [n, h + r, v + s, i])];
      y[at(yShape, [n, h, v, o])] = sum;
    }
    return y;
  };
  return { layer, yShape };
}

interface PlainState { gamma: number[] | null; beta: number[] | null; runningMean: number[]; runningVar: number[]; eps: number }

/**
 * Eval-mode batch norm of z, channel of element e = floor(e / inner) mod C:
 * gamma·(z − runningMean)/sqrt(runningVar + eps) + beta.
 */
function batchNormEval(z: ArrayLike<number>, s: PlainState, inner: number): Float64Array {
  const C = s.runningMean.length;
  return Float64Array.from({ length: z.length }, (_, e) => {
    const c = Math.floor(e / inner) % C;
    return ((s.gamma?.[c] ?? 1) * (z[e] - s.runningMean[c])) / Math.sqrt(s.runningVar[c] + s.eps) + (s.beta?.[c] ?? 0);
  });
}

// ---- Random layers ------------------------------------------------------------------------

/** A random batch norm state of C channels (variance in [0.1, 4]). */
function randomState(seed: number, C: number, eps = 1e-5): PlainState {
  const v = randn(seed + 3, C);
  return {
    gamma: Array.from(randn(seed, C, 1, 0.5)),
    beta: Array.from(randn(seed + 1, C, 0, 0.5)),
    runningMean: Array.from(randn(seed + 2, C, 0.5, 1)),
    runningVar: Array.from(v, (x) => 0.1 + x * x),
    eps,
  };
}

function record(s: PlainState): BatchNormEvalState<Float64Array> {
  return {
    ...(s.gamma ? { gamma: Float64Array.from(s.gamma) } : {}),
    ...(s.beta ? { beta: Float64Array.from(s.beta) } : {}),
    runningMean: Float64Array.from(s.runningMean), runningVar: Float64Array.from(s.runningVar), eps: s.eps,
  };
}

function layerOf(s: PlainState): BatchNorm<"float64"> {
  initSync();
  const bn = new BatchNorm(s.runningMean.length, { eps: s.eps, dtype: "float64" });
  bn.gamma.set(s.gamma!);
  bn.beta.set(s.beta!);
  bn.runningMean.set(s.runningMean);
  bn.runningVar.set(s.runningVar);
  return bn.eval();
}

interface LayoutCase {
  name: string;
  layout: WeightLayout;
  wShape: number[];
  xShape: number[];
  groups?: number;
  /** The layer, and how many consecutive output values share a channel (1: channels last). */
  make: () => { layer: Layer; inner: number };
}

const cases: LayoutCase[] = [
  { name: "linear (out 4, in 6)", layout: "linear", wShape: [4, 6], xShape: [5, 6], make: () => ({ layer: linear(5, 6, 4), inner: 1 }) },
  { name: "dense (in 6, out 4)", layout: "dense", wShape: [6, 4], xShape: [5, 6], make: () => ({ layer: dense(5, 6, 4), inner: 1 }) },
  ...[
    { name: "conv1d (5, 3, 3) padding 1", wShape: [5, 3, 3], xShape: [2, 3, 8], options: { padding: [1] } },
    { name: "conv2d (4, 3, 3, 2) stride 2", wShape: [4, 3, 3, 2], xShape: [2, 3, 7, 6], options: { stride: [2, 2] } },
    { name: "conv2d (6, 2, 3, 3) groups 2 padding 1", wShape: [6, 2, 3, 3], xShape: [1, 4, 5, 5], options: { groups: 2, padding: [1, 1] } },
    { name: "conv3d (3, 2, 2, 2, 2)", wShape: [3, 2, 2, 2, 2], xShape: [2, 2, 3, 4, 3], options: {} },
  ].map((c): LayoutCase => ({
    name: c.name, layout: "conv", wShape: c.wShape, xShape: c.xShape,
    make: () => {
      const { layer, yShape } = conv(c.xShape, c.wShape, c.options);
      return { layer, inner: product(yShape.slice(2)) };
    },
  })),
  ...[
    { name: "convTranspose1d (3, 4, 3) stride 2", wShape: [3, 4, 3], xShape: [2, 3, 5], options: { stride: [2] } },
    { name: "convTranspose2d (3, 5, 2, 3) padding 1", wShape: [3, 5, 2, 3], xShape: [2, 3, 4, 4], options: { padding: [1, 1] } },
    { name: "convTranspose2d (4, 3, 3, 3) groups 2 stride 2", wShape: [4, 3, 3, 3], xShape: [1, 4, 3, 3], options: { groups: 2, stride: [2, 2] } },
    { name: "convTranspose2d (6, 2, 2, 2) groups 3", wShape: [6, 2, 2, 2], xShape: [2, 6, 3, 2], options: { groups: 3 } },
    { name: "convTranspose3d (2, 3, 2, 2, 2)", wShape: [2, 3, 2, 2, 2], xShape: [1, 2, 2, 3, 2], options: {} },
  ].map((c): LayoutCase => ({
    name: c.name, layout: "convTranspose", wShape: c.wShape, xShape: c.xShape, groups: c.options.groups,
    make: () => {
      const { layer, yShape } = convTranspose(c.xShape, c.wShape, c.options);
      return { layer, inner: product(yShape.slice(2)) };
    },
  })),
  {
    name: "conv2d, tfjs (3, 2, 3, 5)", layout: "conv2d", wShape: [3, 2, 3, 5], xShape: [2, 6, 5, 3],
    make: () => ({ layer: conv2dChannelsLast([2, 6, 5, 3], [3, 2, 3, 5]).layer, inner: 1 }),
  },
];

/** Output channels of a case's weight. */
function channelsOf(c: LayoutCase): number {
  if (c.layout === "linear" || c.layout === "conv") return c.wShape[0];
  if (c.layout === "convTranspose") return c.wShape[1] * (c.groups ?? 1);
  return c.wShape[c.wShape.length - 1];
}

describe.each(cases)("$name: the folded layer equals the layer then the eval-mode batch norm", (c) => {
  const C = channelsOf(c);
  const seed = 100 + cases.indexOf(c) * 10;
  const state = randomState(seed, C);
  const weight = randn(seed + 4, product(c.wShape), 0, 0.5);
  const bias = randn(seed + 5, C);
  const x = randn(seed + 6, product(c.xShape));
  const { layer, inner } = c.make();
  const previous = (b: Float64Array | undefined) => ({ weight, ...(b ? { bias: b } : {}), shape: c.wShape, layout: c.layout, ...(c.groups ? { groups: c.groups } : {}) });

  test.each([
    ["a BatchNorm layer", () => layerOf(state)],
    ["a plain state", () => record(state)],
  ])("from %s, with and without bias", (_, bn) => {
    for (const b of [bias, undefined]) {
      const want = batchNormEval(layer(x, weight, b ?? null), state, inner);
      const folded = foldBatchNorm(bn(), previous(b));
      expect(folded.weight).toBeInstanceOf(Float64Array);
      expect(folded.weight.length).toBe(weight.length);
      expect(folded.bias.length).toBe(C);
      expectRelClose(layer(x, folded.weight, folded.bias), want, REL, `${b ? "with" : "without"} bias`);
    }
  });
});

test("the package's own BatchNorm (eval forward) after the layer gives the same as the folded layer", () => {
  // conv2d (4, 3, 3, 3) padding 1, then the float64 layer's eval forward on (N, C, H, W).
  const state = randomState(7, 4);
  const bn = layerOf(state);
  const wShape = [4, 3, 3, 3];
  const xShape = [2, 3, 5, 4];
  const { layer, yShape } = conv(xShape, wShape, { padding: [1, 1] });
  const weight = randn(8, product(wShape));
  const bias = randn(9, 4);
  const x = randn(10, product(xShape));
  const want = bn.forward(layer(x, weight, bias), yShape);
  const folded = foldBatchNorm(bn, { weight, bias, shape: wShape, layout: "conv" });
  expectRelClose(layer(x, folded.weight, folded.bias), want, REL);
});

test("Keras: a BatchNorm.fromKeras layer folds with its epsilon 1e-3 into a tfjs Conv2D, checked by its channels-last eval forward", () => {
  initSync();
  const C = 5;
  const state = randomState(11, C, 1e-3);
  state.runningVar = state.runningVar.map((v) => v / 100); // small variances, where eps matters
  const bn = BatchNorm.fromKeras(C, { dtype: "float64" }).eval();
  expect(bn.eps).toBe(1e-3);
  bn.gamma.set(state.gamma!);
  bn.beta.set(state.beta!);
  bn.runningMean.set(state.runningMean);
  bn.runningVar.set(state.runningVar);
  const wShape = [3, 2, 3, C];
  const xShape = [2, 6, 5, 3];
  const { layer, yShape } = conv2dChannelsLast(xShape, wShape);
  const weight = randn(12, product(wShape));
  const bias = randn(13, C);
  const x = randn(14, product(xShape));
  const z = layer(x, weight, bias);
  const [N, H, W] = yShape;
  const want = bn.forward(z, [N, C, H, W]); // logical shape; stored NHWC, as z is
  expectRelClose(want, batchNormEval(z, state, 1), REL, "the layer's eval forward against the reference");
  const folded = foldBatchNorm(bn, { weight, bias, shape: wShape, layout: "conv2d" });
  const got = layer(x, folded.weight, folded.bias);
  expectRelClose(got, want, REL);
  // With PyTorch's 1e-5 instead, the output is far off: the check sees eps.
  const other = foldBatchNorm({ ...record(state), eps: 1e-5 }, { weight, bias, shape: wShape, layout: "conv2d" });
  const off = maxAbs(layer(x, other.weight, other.bias).map((v, i) => v - want[i]));
  expect(off).toBeGreaterThan(1e-3 * maxAbs(want));
});

test("the checks can fail: a linear weight folded as 'dense' (square, so accepted) scales the wrong axis", () => {
  const state = randomState(21, 4);
  const weight = randn(22, 16);
  const bias = randn(23, 4);
  const x = randn(24, 3 * 4);
  const layer = linear(3, 4, 4);
  const want = batchNormEval(layer(x, weight, bias), state, 1);
  const wrong = foldBatchNorm(record(state), { weight, bias, shape: [4, 4], layout: "dense" });
  const off = maxAbs(layer(x, wrong.weight, wrong.bias).map((v, i) => v - want[i]));
  expect(off).toBeGreaterThan(1e-2 * maxAbs(want));
  // and a (4, 4, k) transposed-convolution weight folded as 'conv' likewise.
  const wShape = [4, 4, 3];
  const xShape = [2, 4, 5];
  const t = convTranspose(xShape, wShape);
  const w = randn(25, product(wShape));
  const xt = randn(26, product(xShape));
  const wantT = batchNormEval(t.layer(xt, w, bias), state, product(t.yShape.slice(2)));
  const right = foldBatchNorm(record(state), { weight: w, bias, shape: wShape, layout: "convTranspose" });
  expectRelClose(t.layer(xt, right.weight, right.bias), wantT, REL);
  const asConv = foldBatchNorm(record(state), { weight: w, bias, shape: wShape, layout: "conv" });
  expect(maxAbs(t.layer(xt, asConv.weight, asConv.bias).map((v, i) => v - wantT[i]))).toBeGreaterThan(1e-2 * maxAbs(wantT));
});

test("a missing bias is zero: bias absent, null and zeros give the same arrays", () => {
  const state = record(randomState(31, 3));
  const weight = randn(32, 3 * 2 * 2 * 2);
  const shape = [3, 2, 2, 2];
  const zero = foldBatchNorm(state, { weight, bias: new Float64Array(3), shape, layout: "conv" });
  expect(foldBatchNorm(state, { weight, shape, layout: "conv" })).toEqual(zero);
  expect(foldBatchNorm(state, { weight, bias: null, shape, layout: "conv" })).toEqual(zero);
  // b' = −runningMean·scale + beta
  const scale = state.runningVar.map((v, c) => state.gamma![c] / Math.sqrt(v + state.eps));
  expect(Array.from(zero.bias)).toEqual(Array.from(scale, (s, c) => -state.runningMean[c] * s + state.beta![c]));
});

test("the formula, exactly: W'[c, ...] = W[c, ...]·gamma_c/sqrt(var_c + eps), b' = (b − mean)·scale + beta, in float64", () => {
  const bn = { gamma: new Float64Array([2, -0.5]), beta: new Float64Array([1, 3]), runningMean: new Float64Array([0.5, -1]), runningVar: new Float64Array([3, 0.25]), eps: 1 };
  // scale = [2/2, −0.5/sqrt(1.25)]
  const s1 = -0.5 / Math.sqrt(1.25);
  const weight = new Float64Array([1, 2, 3, 4, 5, 6]);
  const linearFold = foldBatchNorm(bn, { weight, bias: new Float64Array([10, 20]), shape: [2, 3], layout: "linear" });
  expect(Array.from(linearFold.weight)).toEqual([1, 2, 3, 4 * s1, 5 * s1, 6 * s1]);
  expect(Array.from(linearFold.bias)).toEqual([(10 - 0.5) * 1 + 1, (20 + 1) * s1 + 3]);
  const denseFold = foldBatchNorm(bn, { weight, shape: [3, 2], layout: "dense" });
  expect(Array.from(denseFold.weight)).toEqual([1, 2 * s1, 3, 4 * s1, 5, 6 * s1]);
  // (in 1, out 2, k 3) transposed: output channel is axis 1.
  const transposed = foldBatchNorm(bn, { weight, shape: [1, 2, 3], layout: "convTranspose" });
  expect(Array.from(transposed.weight)).toEqual([1, 2, 3, 4 * s1, 5 * s1, 6 * s1]);
  // (in 2, out/groups 1, k 3), groups 2: input channel i feeds output channel i.
  const grouped = foldBatchNorm(bn, { weight, shape: [2, 1, 3], layout: "convTranspose", groups: 2 });
  expect(Array.from(grouped.weight)).toEqual([1, 2, 3, 4 * s1, 5 * s1, 6 * s1]);
});

test("float32: the folded arrays are Float32Array, each value the float64 result rounded once", () => {
  initSync();
  const state = randomState(41, 6);
  const bn32 = new BatchNorm(6, { eps: 1e-5 });
  bn32.gamma.set(state.gamma!);
  bn32.beta.set(state.beta!);
  bn32.runningMean.set(state.runningMean);
  bn32.runningVar.set(state.runningVar);
  const weight = Float32Array.from(randn(42, 6 * 4 * 3 * 3));
  const bias = Float32Array.from(randn(43, 6));
  const shape = [6, 4, 3, 3];
  const folded = foldBatchNorm(bn32.eval(), { weight, bias, shape, layout: "conv" });
  expect(folded.weight).toBeInstanceOf(Float32Array);
  expect(folded.bias).toBeInstanceOf(Float32Array);
  // The same values in float64 (the float32 layer's state read exactly), then one rounding.
  const exact = foldBatchNorm(
    { gamma: Float64Array.from(bn32.gamma), beta: Float64Array.from(bn32.beta), runningMean: Float64Array.from(bn32.runningMean), runningVar: Float64Array.from(bn32.runningVar), eps: 1e-5 },
    { weight: Float64Array.from(weight), bias: Float64Array.from(bias), shape, layout: "conv" },
  );
  expect(Array.from(folded.weight)).toEqual(Array.from(exact.weight, Math.fround));
  expect(Array.from(folded.bias)).toEqual(Array.from(exact.bias, Math.fround));
  // A float32 scale (one more rounding) would differ somewhere.
  const scale32 = Float32Array.from(bn32.gamma, (g, c) => g / Math.sqrt(bn32.runningVar[c] + 1e-5));
  const twice = Array.from(weight, (w, e) => Math.fround(w * scale32[Math.floor(e / 36)]));
  expect(Array.from(folded.weight)).not.toEqual(twice);
  // And a float64 layer's state folds into float32 weights as well.
  expect(foldBatchNorm(layerOf(state), { weight, bias, shape, layout: "conv" }).weight).toBeInstanceOf(Float32Array);
});

test("a layer without gamma and beta (affine false) folds with gamma 1 and beta 0, whatever its arrays hold", () => {
  initSync();
  const state = randomState(51, 3);
  const bn = new BatchNorm(3, { affine: false, dtype: "float64" });
  bn.gamma.fill(7); // not used by such a layer
  bn.beta.fill(-7);
  bn.runningMean.set(state.runningMean);
  bn.runningVar.set(state.runningVar);
  const weight = randn(52, 6);
  const folded = foldBatchNorm(bn, { weight, shape: [3, 2], layout: "linear" });
  const want = foldBatchNorm({ runningMean: bn.runningMean, runningVar: bn.runningVar, eps: 1e-5 }, { weight, shape: [3, 2], layout: "linear" });
  expect(folded).toEqual(want);
  expect(Array.from(want.weight)).toEqual(Array.from(weight, (w, e) => w * (1 / Math.sqrt(state.runningVar[e >> 1] + 1e-5))));
});

test("a layer in training mode folds with its running statistics, as in eval mode", () => {
  const bn = layerOf(randomState(61, 2));
  const previous = { weight: randn(62, 8), shape: [2, 4], layout: "linear" as const };
  const inEval = foldBatchNorm(bn.eval(), previous);
  expect(foldBatchNorm(bn.train(), previous)).toEqual(inEval);
});

test("a layer with trackRunningStats false cannot be folded", () => {
  initSync();
  const bn = new BatchNorm(2, { trackRunningStats: false, dtype: "float64" });
  expect(() => foldBatchNorm(bn, { weight: new Float64Array(4), shape: [2, 2], layout: "linear" })).toThrow(
    /^bn is a BatchNorm with trackRunningStats false: .*batch's statistics/,
  );
  expect(() => foldBatchNorm(bn, { weight: new Float64Array(4), shape: [2, 2], layout: "linear" })).toThrow(TypeError);
});

describe("errors name the argument, and nothing is modified", () => {
  const C = 3;
  const bn = () => ({ gamma: new Float64Array([1, 2, 3]), beta: new Float64Array(C), runningMean: new Float64Array(C), runningVar: new Float64Array([1, 1, 1]), eps: 1e-5 });
  const prev = () => ({ weight: new Float64Array(C * 2), bias: new Float64Array(C), shape: [C, 2], layout: "linear" as WeightLayout });
  type Args = [ReturnType<typeof bn>, ReturnType<typeof prev>];
  const call = (edit: (a: Args) => unknown) => () => {
    const args: Args = [bn(), prev()];
    const replaced = edit(args);
    return foldBatchNorm(...((Array.isArray(replaced) ? replaced : args) as Parameters<typeof foldBatchNorm>));
  };
  const f32 = (n: number) => new Float32Array(n);
  const cases: [string, () => unknown, ErrorConstructor, RegExp][] = [
    ["bn null", call((a) => [null, a[1]]), TypeError, /^bn must be a BatchNorm or an object like \{ runningMean, runningVar, eps, gamma\?, beta\? \}, got null/],
    ["bn an array", call((a) => [new Float64Array(3), a[1]]), TypeError, /^bn must be a BatchNorm .* got a Float64Array/],
    ["bn with a misspelt key", call((a) => [{ ...a[0], running_mean: a[0].runningMean }, a[1]]), TypeError, /^bn has no option "running_mean" \(did you mean 'runningMean'\?\)/],
    ["bn with PyTorch's name for gamma", call((a) => [{ ...a[0], weight: a[0].gamma }, a[1]]), TypeError, /^bn has no option "weight"/],
    ["bn without runningVar", call((a) => [{ ...a[0], runningVar: undefined }, a[1]]), TypeError, /^bn.runningMean and bn.runningVar are required/],
    ["bn without eps", call((a) => [{ ...a[0], eps: undefined }, a[1]]), TypeError, /^bn.eps is required \(PyTorch's default is 1e-5, Keras' 1e-3/],
    ["eps NaN", call((a) => void (a[0].eps = NaN)), RangeError, /^bn.eps must be a finite number ≥ 0, got NaN/],
    ["eps Infinity", call((a) => void (a[0].eps = Infinity)), RangeError, /^bn.eps must be a finite number ≥ 0, got Infinity/],
    ["eps negative", call((a) => void (a[0].eps = -1e-5)), RangeError, /^bn.eps must be a finite number ≥ 0, got -0.00001/],
    ["eps a string", call((a) => void (a[0].eps = "1e-5" as never)), RangeError, /^bn.eps must be a finite number ≥ 0, got "1e-5"/],
    ["gamma of the wrong length", call((a) => void (a[0].gamma = new Float64Array(4))), RangeError, /^bn.gamma must have length 3 \(runningMean.length, the channels\), got length 4/],
    ["gamma float32, runningMean float64", call((a) => void (a[0].gamma = f32(3) as never)), TypeError, /^bn.gamma is a Float32Array but bn.runningMean is a Float64Array; a batch norm's arrays share one dtype/],
    ["beta a plain array", call((a) => void (a[0].beta = [0, 0, 0] as never)), TypeError, /^bn.beta must be a Float32Array or Float64Array, got an Array/],
    ["runningMean an Int32Array", call((a) => void (a[0].runningMean = new Int32Array(3) as never)), TypeError, /^bn.runningMean must be a Float32Array or Float64Array, got an Int32Array/],
    ["a negative running variance", call((a) => void (a[0].runningVar[1] = -0.5)), RangeError, /^bn.runningVar\[1\] must be a variance ≥ 0, got -0.5/],
    ["a NaN running variance", call((a) => void (a[0].runningVar[2] = NaN)), RangeError, /^bn.runningVar\[2\] must be a variance ≥ 0, got NaN/],
    ["variance + eps = 0", call((a) => { a[0].runningVar[0] = 0; a[0].eps = 0; }), RangeError, /^bn.runningVar\[0\] \+ bn.eps is 0/],
    ["previous missing", call((a) => [a[0], undefined]), TypeError, /^previous must be an object like \{ weight, bias, shape, layout: 'conv' \}, got undefined/],
    ["previous with a misspelt key", call((a) => [a[0], { ...a[1], weights: a[1].weight }]), TypeError, /^previous has no option "weights" \(did you mean 'weight'\?\)/],
    ["an unknown layout", call((a) => void (a[1].layout = "conv1d" as never)), RangeError, /^previous.layout must be 'linear', 'conv', 'convTranspose', 'dense', 'conv2d', got "conv1d"/],
    ["no layout", call((a) => void (a[1].layout = undefined as never)), RangeError, /^previous.layout must be .* got undefined/],
    ["weight a plain array", call((a) => void (a[1].weight = [1, 2, 3, 4, 5, 6] as never)), TypeError, /^previous.weight must be a Float32Array or Float64Array, got an Array/],
    ["shape missing", call((a) => void (a[1].shape = undefined as never)), TypeError, /^previous.shape must be an array \[out, in\], got undefined/],
    ["linear shape of rank 3", call((a) => void (a[1].shape = [3, 2, 1])), RangeError, /^previous.shape must be \[out, in\] for layout 'linear', got \[3, 2, 1\] \(3 dimensions\)/],
    ["conv shape of rank 2", call((a) => void (a[1].layout = "conv")), RangeError, /^previous.shape must be \[out, in \/ groups, \.\.\.kernel\] for layout 'conv', got \[3, 2\]/],
    ["conv2d shape of rank 3", call((a) => Object.assign(a[1], { layout: "conv2d", shape: [1, 2, 3] })), RangeError, /^previous.shape must be \[kh, kw, in, out\] for layout 'conv2d'/],
    ["a shape entry 0", call((a) => void (a[1].shape = [3, 0])), RangeError, /^previous.shape\[1\] must be a positive integer, got 0/],
    ["a shape entry 1.5", call((a) => void (a[1].shape = [3, 1.5])), RangeError, /^previous.shape\[1\] must be a positive integer, got 1.5/],
    ["weight length not the shape's", call((a) => void (a[1].weight = new Float64Array(7))), RangeError, /^previous.weight must have 6 values for shape \[3, 2\], got length 7/],
    ["linear: out not the channels", call((a) => Object.assign(a[1], { shape: [2, 3] })), RangeError, /^the previous layer has previous.shape\[0\] = 2 output channels \(layout 'linear', \[out, in\]\) but the batch norm has 3/],
    ["dense: out (last) not the channels", call((a) => Object.assign(a[1], { layout: "dense" })), RangeError, /^the previous layer has previous.shape\[1\] = 2 output channels \(layout 'dense', \[in, out\]\) but the batch norm has 3/],
    ["conv2d: out (last) not the channels", call((a) => Object.assign(a[1], { layout: "conv2d", shape: [1, 1, 3, 2] })), RangeError, /^the previous layer has previous.shape\[3\] = 2 output channels \(layout 'conv2d'/],
    ["convTranspose: axis 1 not the channels", call((a) => Object.assign(a[1], { layout: "convTranspose", shape: [3, 2, 1] })), RangeError, /^the previous layer has previous.shape\[1\] = 2 output channels \(layout 'convTranspose', \[in, out \/ groups, \.\.\.kernel\]\)/],
    ["convTranspose: groups × out/groups not the channels", call((a) => Object.assign(a[1], { layout: "convTranspose", shape: [2, 1, 3], groups: 2 })), RangeError, /^the previous layer has previous.shape\[1\] · previous.groups = 1 · 2 = 2 output channels/],
    ["convTranspose: inputs not a multiple of groups", call((a) => Object.assign(a[1], { layout: "convTranspose", shape: [2, 1, 3], groups: 3 })), RangeError, /^previous.shape\[0\] = 2 input channels must be a multiple of previous.groups = 3/],
    ["groups 0", call((a) => Object.assign(a[1], { layout: "convTranspose", shape: [3, 3, 1], weight: new Float64Array(9), groups: 0 })), RangeError, /^previous.groups must be a positive integer, got 0/],
    ["groups for a conv", call((a) => Object.assign(a[1], { layout: "conv", shape: [3, 2, 1], groups: 2 })), TypeError, /^previous.groups is for layout 'convTranspose' only/],
    ["bias of the wrong length", call((a) => void (a[1].bias = new Float64Array(2))), RangeError, /^previous.bias must have length 3 \(one per output channel\), got length 2/],
    ["bias float32, weight float64", call((a) => void (a[1].bias = f32(3) as never)), TypeError, /^previous.bias is a Float32Array but previous.weight is a Float64Array; a layer's weight and bias share one dtype/],
  ];

  test.each(cases)("%s", (_, run, type, message) => {
    expect(run).toThrow(type);
    expect(run).toThrow(message);
  });

  test("a BatchNorm's arrays are checked under its names", () => {
    const layer = layerOf(randomState(71, 3));
    const p = prev();
    layer.runningVar = new Float64Array(2);
    expect(() => foldBatchNorm(layer, p)).toThrow(/^bn.runningVar must have length 3 \(numFeatures\), got length 2/);
    layer.runningVar = new Float64Array(3).fill(1);
    layer.gamma = new Float32Array(3) as never;
    expect(() => foldBatchNorm(layer, p)).toThrow(/^bn.gamma is a Float32Array but the input is a Float64Array/);
    layer.gamma = new Float64Array(3);
    layer.eps = Infinity;
    expect(() => foldBatchNorm(layer, p)).toThrow(/^bn.eps must be a finite number ≥ 0, got Infinity/);
    expect(() => foldBatchNorm(layer, p)).toThrow(RangeError);
  });

  test("inputs are left as they were, after a fold and after an error", () => {
    const state = bn();
    state.runningMean.set([0.5, -1, 2]);
    const p = { ...prev(), weight: randn(81, 6), bias: randn(82, 3) };
    const copies = [state.gamma, state.beta, state.runningMean, state.runningVar, p.weight, p.bias].map((a) => Array.from(a));
    const folded = foldBatchNorm(state, p);
    expect(folded.weight).not.toBe(p.weight);
    expect(folded.bias).not.toBe(p.bias);
    expect(() => foldBatchNorm({ ...state, eps: -1 }, p)).toThrow(RangeError);
    expect(() => foldBatchNorm(state, { ...p, shape: [2, 3] })).toThrow(RangeError);
    expect([state.gamma, state.beta, state.runningMean, state.runningVar, p.weight, p.bias].map((a) => Array.from(a))).toEqual(copies);
    expect(p.shape).toEqual([3, 2]);
  });
});

// ---- PyTorch ------------------------------------------------------------------------------

interface FoldFixture {
  name: string; kind: "linear" | "conv" | "convTranspose"; config: { stride?: number[]; padding?: number[]; groups?: number };
  weightShape: number[]; weight: number[]; bias: number[] | null;
  bn: { gamma: number[] | null; beta: number[] | null; runningMean: number[]; runningVar: number[]; eps: number };
  fusedWeight: number[]; fusedBias: number[]; xShape: number[]; x: number[]; yShape: number[]; y: number[];
}

const torchCases = (fixtures as { torch: string; cases: FoldFixture[] }).cases;

function referenceLayer(c: FoldFixture): Layer {
  if (c.kind === "linear") return linear(c.xShape[0], c.weightShape[1], c.weightShape[0]);
  return (c.kind === "conv" ? conv : convTranspose)(c.xShape, c.weightShape, c.config).layer;
}

test("the PyTorch fixtures cover linear, conv1d/2d/3d, grouped conv, convTranspose, no bias, no affine, eps 1e-3", () => {
  expect((fixtures as { torch: string }).torch).toMatch(/^1\.13/);
  expect(torchCases.map((c) => c.kind).sort()).toEqual(["conv", "conv", "conv", "conv", "convTranspose", "convTranspose", "linear", "linear"]);
  expect(torchCases.some((c) => c.bias === null && c.kind === "convTranspose")).toBe(true);
  expect(torchCases.some((c) => c.bn.gamma === null)).toBe(true);
  expect(torchCases.some((c) => c.bn.eps === 1e-3)).toBe(true);
  expect(new Set(torchCases.map((c) => c.weightShape.length))).toEqual(new Set([2, 3, 4, 5]));
});

describe.each(torchCases)("PyTorch: $name", (c) => {
  const state: BatchNormEvalState<Float64Array> = {
    ...(c.bn.gamma ? { gamma: Float64Array.from(c.bn.gamma) } : {}),
    ...(c.bn.beta ? { beta: Float64Array.from(c.bn.beta) } : {}),
    runningMean: Float64Array.from(c.bn.runningMean), runningVar: Float64Array.from(c.bn.runningVar), eps: c.bn.eps,
  };
  const fold = () => foldBatchNorm(state, {
    weight: Float64Array.from(c.weight), ...(c.bias ? { bias: Float64Array.from(c.bias) } : {}), shape: c.weightShape, layout: c.kind,
  });

  test(`matches ${c.kind === "linear" ? "fuse_linear_bn_eval" : "fuse_conv_bn_eval"} within 1e-12 relative`, () => {
    const { weight, bias } = fold();
    expectRelClose(weight, c.fusedWeight, REL, "weight");
    expectRelClose(bias, c.fusedBias, REL, "bias");
  });

  test("the reference layer agrees with PyTorch's bn(layer(x)), unfolded and folded", () => {
    const layer = referenceLayer(c);
    const C = c.bn.runningMean.length;
    const inner = c.kind === "linear" ? 1 : product(c.yShape.slice(2));
    expect(c.yShape[1]).toBe(C);
    expectRelClose(batchNormEval(layer(c.x, c.weight, c.bias), c.bn, inner), c.y, REL, "unfolded");
    const { weight, bias } = fold();
    expectRelClose(layer(c.x, weight, bias), c.y, REL, "folded");
  });
});

