// The running-statistics conventions that differ between CS231n, PyTorch, Keras and ONNX,
// each an explicit option with CS231n's behaviour as the default.
import type { FloatArray } from "./dtype.js";
import type { BatchNormOptions } from "./layer.js";
import * as check from "./validate.js";

/** How the running statistics are kept: momentum, its convention, and the variance they track. */
export interface RunningStatsOptions {
  /**
   * How fast the running statistics move; default 0.9. null: the cumulative average of all
   * batches so far (PyTorch's momentum=None), counted by numBatchesTracked.
   */
  momentum?: number | null;
  /**
   * 'cs231n' (default, also Keras and ONNX): running = momentum·running + (1 − momentum)·batch.
   * 'pytorch': momentum is the weight of the new batch, running = (1 − momentum)·running + momentum·batch.
   */
  momentumConvention?: "cs231n" | "pytorch";
  /**
   * The batch variance that goes into the running average: 'biased' (÷ n, default; CS231n,
   * Keras, ONNX) or 'unbiased' (÷ (n − 1), PyTorch), n = N·H·W. Normalization always uses
   * the biased one.
   */
  runningVariance?: "biased" | "unbiased";
}

export interface RunningStatsRule {
  momentum: number | null;
  convention: "cs231n" | "pytorch";
  unbiased: boolean;
}

export function runningStatsRule(options: RunningStatsOptions, prefix: string, defaultMomentum: number): RunningStatsRule {
  const momentum = options.momentum === null ? null : check.momentum(options.momentum ?? defaultMomentum, `${prefix}momentum`);
  const convention = options.momentumConvention ?? "cs231n";
  if (convention !== "cs231n" && convention !== "pytorch") {
    throw new RangeError(`${prefix}momentumConvention must be 'cs231n' or 'pytorch', got ${JSON.stringify(convention)}`);
  }
  const variance = options.runningVariance ?? "biased";
  if (variance !== "biased" && variance !== "unbiased") {
    throw new RangeError(`${prefix}runningVariance must be 'biased' or 'unbiased', got ${JSON.stringify(variance)}`);
  }
  return { momentum, convention, unbiased: variance === "unbiased" };
}

/**
 * The kernels' momentum (the weight of the old running value) for the step that makes
 * `batchesTracked` batches, and the factor on the batch variance.
 */
export function stepFactors(rule: RunningStatsRule, batchesTracked: number, count: number, shape: readonly number[]) {
  checkBatchCount(rule, count, shape);
  const momentum = rule.momentum === null
    ? 1 - 1 / batchesTracked
    : rule.convention === "pytorch" ? 1 - rule.momentum : rule.momentum;
  return { momentum, runVarScale: rule.unbiased ? count / (count - 1) : 1 };
}

/**
 * PyTorch's rule (the unbiased convention): batch statistics of one value per channel are
 * refused, whether or not they move running statistics (without running statistics, PyTorch
 * normalizes with batch statistics in eval mode too).
 */
export function checkBatchCount(rule: RunningStatsRule, count: number, shape: readonly number[]): void {
  if (rule.unbiased && count === 1) {
    // PyTorch's own words, for the same case.
    throw new RangeError(`Expected more than 1 value per channel when training, got input size [${shape.join(", ")}]`);
  }
}

/** What the presets make: a layer's feature count and its options, spelled in this package's names. */
export function pytorchPreset(options: {
  num_features: number; eps?: number; momentum?: number | null; affine?: boolean; track_running_stats?: boolean; dtype?: "float32" | "float64";
}): { numFeatures: number; options: BatchNormOptions } {
  if (options === null || typeof options !== "object") throw new TypeError("fromPyTorch options must be an object like { num_features: 64 }");
  check.knownKeys("fromPyTorch options", options, ["num_features", "eps", "momentum", "affine", "track_running_stats", "dtype"]);
  return {
    numFeatures: options.num_features,
    options: {
      eps: options.eps ?? 1e-5, momentum: options.momentum === undefined ? 0.1 : options.momentum, momentumConvention: "pytorch",
      runningVariance: "unbiased", affine: options.affine ?? true, trackRunningStats: options.track_running_stats ?? true,
      layout: "NCHW", dtype: options.dtype,
    },
  };
}

/** Keras' BatchNormalization's defaults and names, as this package's options. */
export function kerasPreset(options: {
  axis?: number; momentum?: number; epsilon?: number; center?: boolean; scale?: boolean; dtype?: "float32" | "float64";
}): BatchNormOptions {
  if (options === null || typeof options !== "object") throw new TypeError("fromKeras options must be an object");
  check.knownKeys("fromKeras options", options, ["axis", "momentum", "epsilon", "center", "scale", "dtype"]);
  const axis = options.axis ?? -1;
  if (axis !== -1 && axis !== 1) throw new RangeError(`axis must be -1 (channels last) or 1 (channels first), got ${check.shown(axis)}`);
  return {
    eps: options.epsilon ?? 1e-3, momentum: options.momentum ?? 0.99, momentumConvention: "cs231n", runningVariance: "biased",
    center: options.center ?? true, scale: options.scale ?? true, layout: axis === -1 ? "NHWC" : "NCHW", dtype: options.dtype,
  };
}

/** PyTorch's state_dict names; Keras' weight names. Plain arrays, JSON-serializable. */
export interface PyTorchState {
  /** gamma, one value per feature. */
  weight?: number[];
  /** beta, one value per feature. */
  bias?: number[];
  /** The running mean, one value per feature. */
  running_mean?: number[];
  /** The running variance (unbiased, as PyTorch keeps it), one value per feature. */
  running_var?: number[];
  /** The number of train-mode batches seen so far. */
  num_batches_tracked?: number;
}
/** Keras' weights of a BatchNormalization layer, by their names; plain arrays, JSON-serializable. */
export interface KerasState {
  /** The scale, one value per feature (absent when scale is false). */
  gamma?: number[];
  /** The shift, one value per feature (absent when center is false). */
  beta?: number[];
  /** The running mean, one value per feature. */
  moving_mean?: number[];
  /** The running variance (biased, as Keras keeps it), one value per feature. */
  moving_variance?: number[];
}

/** The state's keys in each framework's names; Keras keeps no batch count. */
const STATE_NAMES = {
  pytorch: { gamma: "weight", beta: "bias", mean: "running_mean", variance: "running_var", count: "num_batches_tracked" },
  keras: { gamma: "gamma", beta: "beta", mean: "moving_mean", variance: "moving_variance", count: null },
} as const;
type StateNames = (typeof STATE_NAMES)[keyof typeof STATE_NAMES];

/** The part of a layer a state dict reads and writes. */
export interface StatefulLayer {
  readonly numFeatures: number;
  readonly useGamma: boolean;
  readonly useBeta: boolean;
  readonly trackRunningStats: boolean;
  gamma: FloatArray;
  beta: FloatArray;
  runningMean: FloatArray;
  runningVar: FloatArray;
  numBatchesTracked: number;
}

/** A layer's state in a framework's names, as plain arrays. */
export function stateOf(layer: StatefulLayer, format: "pytorch" | "keras"): PyTorchState | KerasState {
  if (format !== "pytorch" && format !== "keras") throw new RangeError(`format must be 'pytorch' or 'keras', got ${JSON.stringify(format)}`);
  const names = STATE_NAMES[format];
  const state: Record<string, number[] | number> = {};
  if (layer.useGamma) state[names.gamma] = Array.from(layer.gamma);
  if (layer.useBeta) state[names.beta] = Array.from(layer.beta);
  if (layer.trackRunningStats) {
    state[names.mean] = Array.from(layer.runningMean);
    state[names.variance] = Array.from(layer.runningVar);
    if (names.count) state[names.count] = layer.numBatchesTracked;
  }
  return state;
}

/** Loads a state in either framework's names (told apart by its keys); on any error nothing changes. */
export function loadState(layer: StatefulLayer, state: PyTorchState | KerasState): void {
  if (state === null || typeof state !== "object" || Array.isArray(state)) throw new TypeError("state must be an object");
  const keras = "moving_mean" in state || "gamma" in state || "beta" in state || "moving_variance" in state;
  const names: StateNames = STATE_NAMES[keras ? "keras" : "pytorch"];
  const expected: string[] = [
    ...(layer.useGamma ? [names.gamma] : []), ...(layer.useBeta ? [names.beta] : []),
    ...(layer.trackRunningStats ? [names.mean, names.variance, ...(names.count ? [names.count] : [])] : []),
  ];
  const record = state as Record<string, unknown>;
  const extra = Object.keys(record).filter((k) => !expected.includes(k));
  if (extra.length) throw new RangeError(`unexpected key(s) in state: ${extra.join(", ")} (expected ${expected.join(", ")})`);
  const missing = expected.filter((k) => !(k in record));
  if (missing.length) throw new RangeError(`missing key(s) in state: ${missing.join(", ")}`);
  const values = (key: string): Float64Array => {
    const v = record[key];
    const ok = (Array.isArray(v) || v instanceof Float32Array || v instanceof Float64Array) && (v as ArrayLike<unknown>).length === layer.numFeatures;
    if (!ok) throw new RangeError(`state.${key} must be an array of ${layer.numFeatures} numbers`);
    return Float64Array.from(v as ArrayLike<number>, (x, i) => {
      if (typeof x !== "number") throw new TypeError(`state.${key}[${i}] must be a number, got ${check.shown(x)}`);
      // A negative or NaN variance would turn the column into NaN in eval mode.
      if (key === names.variance && !(x >= 0)) throw new RangeError(`state.${key}[${i}] must be a variance ≥ 0, got ${x}`);
      return x;
    });
  };
  // Check everything before changing anything.
  const loaded: [FloatArray, Float64Array][] = [];
  if (layer.useGamma) loaded.push([layer.gamma, values(names.gamma)]);
  if (layer.useBeta) loaded.push([layer.beta, values(names.beta)]);
  let count = layer.numBatchesTracked;
  if (layer.trackRunningStats) {
    loaded.push([layer.runningMean, values(names.mean)], [layer.runningVar, values(names.variance)]);
    if (names.count) {
      const c = record[names.count];
      if (typeof c !== "number" || !Number.isInteger(c) || c < 0) throw new RangeError(`state.${names.count} must be a whole number ≥ 0, got ${check.shown(c)}`);
      count = c;
    }
  }
  for (const [target, source] of loaded) target.set(source);
  layer.numBatchesTracked = count;
}
