// Folding an eval-mode batch norm into the layer before it (PyTorch's fuse_conv_bn_eval and
// fuse_linear_bn_eval): with frozen statistics, batch norm is a per-channel affine map
//   y_c = scale_c·(z_c − runningMean_c) + beta_c,   scale_c = gamma_c / sqrt(runningVar_c + eps),
// and z = W·x + b is linear, so y = W'·x + b' with W'[c, ...] = scale_c·W[c, ...] and
// b' = scale·(b − runningMean) + beta. Computed in float64, rounded once to the weight's type.
import { type Dtype, type FloatArray, dtypeOf, typeName } from "./dtype.js";
import { BatchNorm } from "./layer.js";
import * as check from "./validate.js";

/**
 * How the previous layer's weight is stored, by framework and layer; the output channel is
 * the axis the batch norm's channels run along.
 * - 'linear': PyTorch Linear, (out, in).
 * - 'conv': PyTorch Conv1d/2d/3d, (out, in / groups, ...kernel).
 * - 'convTranspose': PyTorch ConvTranspose1d/2d/3d, (in, out / groups, ...kernel).
 * - 'dense': tfjs / Keras Dense, (in, out).
 * - 'conv2d': tfjs / Keras Conv2D, (kh, kw, in, out).
 */
export type WeightLayout = "linear" | "conv" | "convTranspose" | "dense" | "conv2d";

const WEIGHT_LAYOUTS = ["linear", "conv", "convTranspose", "dense", "conv2d"] as const satisfies readonly WeightLayout[];

/** The shape each layout expects, as messages show it. */
const SHAPE_OF: Record<WeightLayout, string> = {
  linear: "[out, in]",
  conv: "[out, in / groups, ...kernel]",
  convTranspose: "[in, out / groups, ...kernel]",
  dense: "[in, out]",
  conv2d: "[kh, kw, in, out]",
};

/**
 * A batch norm's eval-mode state, as the functional API holds it: gamma absent is 1 and
 * beta absent is 0 (affine = false). All arrays have one dtype and one length, the channels.
 */
export interface BatchNormEvalState<A extends FloatArray = FloatArray> {
  /** The scale, one value per channel; absent: 1. */
  gamma?: A;
  /** The shift, one value per channel; absent: 0. */
  beta?: A;
  /** The running mean, one value per channel. */
  runningMean: A;
  /** The running variance, one value per channel. */
  runningVar: A;
  /** Required: the default differs between frameworks (PyTorch 1e-5, Keras 1e-3). */
  eps: number;
}

const STATE_KEYS = ["gamma", "beta", "runningMean", "runningVar", "eps"] as const satisfies readonly (keyof BatchNormEvalState)[];

/** The layer before the batch norm: its weight, its bias (absent or null: zero) and how the weight is stored. */
export interface PreviousLayer<A extends FloatArray = FloatArray> {
  /** The weight, row-major in `layout`, of `shape`. */
  weight: A;
  /** The bias, one value per output channel; absent or null: zero. */
  bias?: A | null;
  /** The weight's logical shape, in the order of `layout` (see WeightLayout). */
  shape: readonly number[];
  /** How the weight is stored: PyTorch's 'linear', 'conv', 'convTranspose' or tfjs's 'dense', 'conv2d'. */
  layout: WeightLayout;
  /** 'convTranspose' only (default 1): its weight holds out / groups output channels per group of inputs. */
  groups?: number;
}

const PREVIOUS_KEYS = ["weight", "bias", "shape", "layout", "groups"] as const satisfies readonly (keyof PreviousLayer)[];

/** The folded layer: new arrays of the weight's dtype and shape, and a bias of one value per output channel. */
export interface FoldedLayer<A extends FloatArray = FloatArray> {
  /** The folded weight, in the previous layer's shape and layout. */
  weight: A;
  /** The folded bias, one value per output channel. */
  bias: A;
}

/**
 * Folds an eval-mode batch norm into the layer before it: returns the weight and bias of one
 * layer that computes batch norm (with its running statistics) of the previous layer's
 * output. `bn` is a BatchNorm (its eval state: running statistics, gamma and beta if it uses
 * them, its eps — 1e-3 for BatchNorm.fromKeras) or a plain BatchNormEvalState. Computed in
 * float64 and rounded once to the weight's dtype; nothing passed in is modified.
 */
export function foldBatchNorm<A extends FloatArray>(bn: BatchNorm<Dtype> | BatchNormEvalState, previous: PreviousLayer<A>): FoldedLayer<A> {
  const state = evalState(bn);
  const target = previousLayer(previous, state.channels);
  const { channels, scale, shift } = perChannel(state);
  const { weight, bias } = target;
  const f64 = weight instanceof Float64Array;
  const folded = (f64 ? new Float64Array(weight.length) : new Float32Array(weight.length)) as A;
  // Element e of the weight belongs to output channel channelOf(e): blocks of `inner` values
  // of one channel, channel = (block mod channels), or for grouped transposed convolutions
  // the group's first channel plus the block's index in its group.
  const { inner, channelOf } = target;
  for (let block = 0, e = 0; e < weight.length; block++) {
    const s = scale[channelOf(block)];
    for (const end = e + inner; e < end; e++) folded[e] = weight[e] * s;
  }
  const foldedBias = (f64 ? new Float64Array(channels) : new Float32Array(channels)) as A;
  for (let c = 0; c < channels; c++) foldedBias[c] = ((bias ? bias[c] : 0) - state.runningMean[c]) * scale[c] + shift[c];
  return { weight: folded, bias: foldedBias };
}

interface CheckedState {
  channels: number;
  gamma: FloatArray | null;
  beta: FloatArray | null;
  runningMean: FloatArray;
  runningVar: FloatArray;
  eps: number;
}

/** The batch norm's state, checked; arrays named as the caller knows them (bn.runningMean). */
function evalState(bn: unknown): CheckedState {
  if (bn instanceof BatchNorm) {
    if (!bn.trackRunningStats) {
      throw new TypeError(
        "bn is a BatchNorm with trackRunningStats false: it normalizes with each batch's statistics in eval mode too, which no fixed weight and bias can fold",
      );
    }
    const d = bn.numFeatures;
    const dtype = bn.dtype;
    const array = (name: string, value: unknown) => check.floatArrayOfLength(`bn.${name}`, value, dtype, d, "numFeatures");
    return {
      channels: d,
      gamma: bn.useGamma ? array("gamma", bn.gamma) : null,
      beta: bn.useBeta ? array("beta", bn.beta) : null,
      runningMean: array("runningMean", bn.runningMean),
      runningVar: array("runningVar", bn.runningVar),
      eps: check.eps(bn.eps, "bn.eps"),
    };
  }
  if (bn === null || typeof bn !== "object" || Array.isArray(bn) || ArrayBuffer.isView(bn)) {
    throw new TypeError(`bn must be a BatchNorm or an object like { runningMean, runningVar, eps, gamma?, beta? }, got ${check.shown(bn)}`);
  }
  check.knownKeys("bn", bn, STATE_KEYS);
  const record = bn as Partial<BatchNormEvalState>;
  if (record.runningMean === undefined || record.runningVar === undefined) {
    throw new TypeError("bn.runningMean and bn.runningVar are required (the statistics eval mode normalizes with)");
  }
  if (record.eps === undefined) {
    throw new TypeError("bn.eps is required (PyTorch's default is 1e-5, Keras' 1e-3: say which)");
  }
  const runningMean = check.floatArray("bn.runningMean", record.runningMean);
  const dtype = dtypeOf(runningMean);
  const d = runningMean.length;
  const array = (name: string, value: unknown) =>
    check.floatArrayOfLength(`bn.${name}`, sameType(`bn.${name}`, value, dtype, "bn.runningMean", "a batch norm's arrays share one dtype"), dtype, d, "runningMean.length, the channels");
  return {
    channels: d,
    gamma: record.gamma === undefined ? null : array("gamma", record.gamma),
    beta: record.beta === undefined ? null : array("beta", record.beta),
    runningMean,
    runningVar: array("runningVar", record.runningVar),
    eps: check.eps(record.eps, "bn.eps"),
  };
}

/** A float array of the dtype of the array named `like`, with a message naming both. */
function sameType(name: string, value: unknown, dtype: Dtype, like: string, why: string): FloatArray {
  const a = check.floatArray(name, value);
  if (dtypeOf(a) !== dtype) throw new TypeError(`${name} is a ${typeName(dtypeOf(a))} but ${like} is a ${typeName(dtype)}; ${why}`);
  return a;
}

/** scale_c = gamma_c / sqrt(runningVar_c + eps) and beta_c, in float64. */
function perChannel(state: CheckedState): { channels: number; scale: Float64Array; shift: Float64Array } {
  const { channels, gamma, beta, runningVar, eps } = state;
  const scale = new Float64Array(channels);
  const shift = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    const v = runningVar[c];
    if (!(v >= 0)) throw new RangeError(`bn.runningVar[${c}] must be a variance ≥ 0, got ${v}`);
    if (v + eps === 0) throw new RangeError(`bn.runningVar[${c}] + bn.eps is 0: that channel's scale 1/sqrt(0) is infinite`);
    scale[c] = (gamma ? gamma[c] : 1) / Math.sqrt(v + eps);
    shift[c] = beta ? beta[c] : 0;
  }
  return { channels, scale, shift };
}

interface CheckedPrevious {
  weight: FloatArray;
  bias: FloatArray | null;
  /** Values per block of the weight that share one output channel. */
  inner: number;
  /** The output channel of the weight's block k (of `inner` values). */
  channelOf: (block: number) => number;
}

/** The previous layer, checked against the batch norm's channel count. */
function previousLayer(previous: unknown, channels: number): CheckedPrevious {
  if (previous === null || typeof previous !== "object" || Array.isArray(previous) || ArrayBuffer.isView(previous)) {
    throw new TypeError(`previous must be an object like { weight, bias, shape, layout: 'conv' }, got ${check.shown(previous)}`);
  }
  check.knownKeys("previous", previous, PREVIOUS_KEYS);
  const p = previous as Partial<PreviousLayer>;
  const layout = p.layout;
  if (!WEIGHT_LAYOUTS.includes(layout as WeightLayout)) {
    throw new RangeError(`previous.layout must be ${WEIGHT_LAYOUTS.map((l) => `'${l}'`).join(", ")}, got ${check.shown(layout)}`);
  }
  const l = layout as WeightLayout;
  const weight = check.floatArray("previous.weight", p.weight);
  const dtype = dtypeOf(weight);
  const shape = p.shape;
  if (!Array.isArray(shape)) throw new TypeError(`previous.shape must be an array ${SHAPE_OF[l]}, got ${check.shown(shape)}`);
  const rank = shape.length;
  const rankOk = l === "linear" || l === "dense" ? rank === 2 : l === "conv2d" ? rank === 4 : rank >= 3;
  if (!rankOk) {
    throw new RangeError(`previous.shape must be ${SHAPE_OF[l]} for layout '${l}', got [${shape.join(", ")}] (${rank} dimensions)`);
  }
  shape.forEach((v, i) => check.positiveInteger(`previous.shape[${i}]`, v));
  const total = (shape as number[]).reduce((a, b) => a * b, 1);
  if (weight.length !== total) {
    throw new RangeError(`previous.weight must have ${total} values for shape [${shape.join(", ")}], got length ${weight.length}`);
  }
  if (p.groups !== undefined && l !== "convTranspose") {
    throw new TypeError(`previous.groups is for layout 'convTranspose' only: a '${l}' weight's output channel axis is the same whatever the groups`);
  }
  const groups = p.groups === undefined ? 1 : check.positiveInteger("previous.groups", p.groups);
  const axis = l === "linear" || l === "conv" ? 0 : l === "convTranspose" ? 1 : rank - 1;
  const outputs = shape[axis] * groups;
  if (outputs !== channels) {
    const what = groups > 1 ? `previous.shape[1] · previous.groups = ${shape[1]} · ${groups} = ${outputs}` : `previous.shape[${axis}] = ${outputs}`;
    throw new RangeError(`the previous layer has ${what} output channels (layout '${l}', ${SHAPE_OF[l]}) but the batch norm has ${channels}`);
  }
  if (groups > 1 && shape[0] % groups !== 0) {
    throw new RangeError(`previous.shape[0] = ${shape[0]} input channels must be a multiple of previous.groups = ${groups}`);
  }
  const bias = p.bias === undefined || p.bias === null
    ? null
    : check.floatArrayOfLength(
      "previous.bias", sameType("previous.bias", p.bias, dtype, "previous.weight", "a layer's weight and bias share one dtype"), dtype, channels,
      "one per output channel",
    );
  const after = (shape as number[]).slice(axis + 1).reduce((a, b) => a * b, 1);
  if (l !== "convTranspose") return { weight, bias, inner: after, channelOf: (block) => block % channels };
  // (in, out / groups, ...kernel): block k is input channel i = floor(k / perGroup) and
  // output j = k mod perGroup of group floor(i / inputsPerGroup).
  const perGroup = shape[1];
  const inputsPerGroup = shape[0] / groups;
  return {
    weight, bias, inner: after,
    channelOf: (block) => Math.floor(Math.floor(block / perGroup) / inputsPerGroup) * perGroup + (block % perGroup),
  };
}
