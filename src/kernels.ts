// The kernel registry: every WebAssembly kernel, written once. Each entry names the module
// (part) it ships in and binds the export to named records, so that no call site passes a
// list of bare numbers. scripts/build-wasm.mjs reads KERNELS to split the build into parts
// and fails on an export that is not listed here; src/wasm.ts binds them; the 'js' backend
// implements the same Kernels interface with src/reference.ts.
//
// This file has no imports but types: the build loads it before anything is compiled.
import type { Dtype } from "./dtype.js";

/** The kernels' view of a batch: rows (n, d) when S = 1, channels-first (n, d, S) otherwise. */
export interface KernelShape {
  n: number;
  d: number;
  S: number;
}

/**
 * Byte addresses in the engine's memory of the arrays one step works on; 0 means absent
 * (gamma: 1, beta: 0, running statistics: not updated, invStd in test mode: not written,
 * dgamma/dbeta/dx: not computed). Data arrays hold n·d·S values, column arrays d, all of the
 * step's dtype; work is 16-byte aligned, workBytes long.
 */
export interface Pointers {
  x: number; out: number; dout: number; dx: number;
  gamma: number; beta: number; runMean: number; runVar: number;
  mean: number; meanLo: number; variance: number; invStd: number;
  dgamma: number; dbeta: number; work: number;
  /** The state of a checksum of x (CHECKSUM_WORDS u32), where a step computes one. */
  checksum: number;
}

/** The per-step factors of a forward: eps, and the running-statistics update (see conventions.ts). */
export interface StepFactors {
  eps: number;
  /** Weight of the old running value. */
  momentum: number;
  /** Factor on the batch variance before it enters the running variance: 1, or N/(N − 1). */
  runVarScale: number;
}

/** The work area's steps; the same numbers in assembly/work.ts. */
export const TEST_STEP = 0;
export const TRAIN_STEP = 1;
export const BACKWARD_STEP = 2;
/** A backward through the fused ReLU (activation: 'relu'): more work area for the mask. */
export const BACKWARD_RELU_STEP = 3;
/** The channels-last GroupNorm kernels' scratch, for (positions, channels, 1) of one item. */
export const GROUP_LAST_STEP = 4;
export type WorkStep = typeof TEST_STEP | typeof TRAIN_STEP | typeof BACKWARD_STEP | typeof BACKWARD_RELU_STEP | typeof GROUP_LAST_STEP;

/** Backward forms; the same numbers in assembly/backward.ts. */
export const GRAPH_FORM = 0;
export const COMPACT_FORM = 1;
/** The statistics as constants (an eval-mode forward): dx = dout·γ·invStd. */
export const EVAL_FORM = 2;
export type BackwardForm = typeof GRAPH_FORM | typeof COMPACT_FORM | typeof EVAL_FORM;

/**
 * An activation fused into the batch norm: 'relu' is out = max(0, BN(x)), whose backward masks
 * dout by out > 0 (recomputed from x and the saved statistics, see assembly/activation.ts).
 */
export type Activation = "none" | "relu";

/** What every backend provides: one step's kernels on the pointers of a block. */
export interface Kernels {
  /** Bytes of work area the kernels of `step` take for this shape (a float64 count: it may exceed 4 GiB). */
  workBytes(dtype: Dtype, shape: KernelShape, step: WorkStep): number;
  /** Batch statistics into mean, meanLo, variance, invStd; running statistics moved; out normalized. */
  forwardTrain(dtype: Dtype, shape: KernelShape, p: Pointers, f: StepFactors, activation?: Activation): void;
  /**
   * out normalized with the running statistics. With `again`, the map the last call computed
   * in this work area is applied to other rows of the same batch (a batch in parts). With
   * 'relu', p.invStd must be present (the fused map and the backward's mask come from it).
   */
  forwardTest(dtype: Dtype, shape: KernelShape, p: Pointers, eps: number, again: boolean, activation?: Activation): void;
  /** dgamma, dbeta and (when p.dx) dx from dout and the forward's x, mean, meanLo, invStd (and with 'relu', beta). */
  backward(dtype: Dtype, form: BackwardForm, shape: KernelShape, p: Pointers, activation?: Activation): void;
  /**
   * Adds the u32 words at p (word `first` of a longer run) to an order-sensitive checksum
   * whose state (CHECKSUM_WORDS u32) is at `state` (see assembly/checksum.ts).
   */
  checksum(p: number, words: number, first: number, state: number): void;
  /**
   * Synchronized batch norm (sync.ts): the column mean, meanLo (what the mean's rounding lost,
   * or 0) and biased variance of x in float64, into `into` (3·d values in that order), as a
   * train step's first kernel computes them.
   */
  moments(dtype: Dtype, shape: KernelShape, p: Pointers, into: Float64Array): void;
  /** Synchronized batch norm: out = (x − center)·scale + bias, `map` 3·d float64 values (center, scale, bias). */
  normalizeWith(dtype: Dtype, shape: KernelShape, p: Pointers, map: Float64Array): void;
  /** Synchronized batch norm: Σdout and Σdout·(x − p.mean) in float64, into `into` (2·d values); p.meanLo, p.invStd any. */
  backwardSums(dtype: Dtype, shape: KernelShape, p: Pointers, into: Float64Array): void;
  /** Synchronized batch norm: dx = a·((dout − m) − b·(x − p.mean)), `map` 3·d float64 values (a, m, b). */
  backwardApplyWith(dtype: Dtype, shape: KernelShape, p: Pointers, map: Float64Array): void;
}

/**
 * The work area's layout (assembly/work.ts): MAP_ARRAYS per-column arrays of the step's dtype
 * (the map), then the kernels' f64 column sums; each array padded to 16 bytes.
 */
export const MAP_ARRAYS = 3;
/** Bytes of one per-column array of d values of `size` bytes, padded as columnArray pads it. */
export const columnBytes = (d: number, size: number) => Math.ceil((d * size) / 16) * 16;

/** u32 words of a checksum's state: Fletcher's two sums in four lanes. */
export const CHECKSUM_WORDS = 8;

type Export = (...args: number[]) => number | void;

/**
 * Every export, with its part and its binding (F32 and F64 variants share both). A part is
 * one small module (see scripts/build-wasm.mjs); `rows`/`planes` variants are two exports so
 * that each module holds one of the two loops.
 */
export const KERNELS = {
  /** Work-area size of a step, in f64 (assembly/work.ts). */
  workBytes: { part: "constants", bind: (f: Export) => (s: KernelShape, step: number) => f(s.n, s.d, s.S, step) as number },
  /** Column mean, meanLo and variance of rows (S = 1) into the work area. */
  trainMoments: { part: "moments", bind: (f: Export) => (s: KernelShape, p: Pointers) => f(p.x, s.n, s.d, p.work) },
  /** The same for channels-first runs (S > 1). */
  trainPlaneMoments: { part: "plane-moments", bind: (f: Export) => (s: KernelShape, p: Pointers) => f(p.x, s.n, s.d, s.S, p.work) },
  /** From the moments: mean, meanLo, variance, invStd, the running update and the map for normalize. */
  trainConstants: {
    part: "constants",
    bind: (f: Export) => (s: KernelShape, p: Pointers, k: StepFactors) =>
      f(s.d, p.gamma, p.beta, k.eps, k.momentum, k.runVarScale, p.runMean, p.runVar, p.mean, p.meanLo, p.variance, p.invStd, p.work),
  },
  /** The map for normalize from the running statistics; invStd written unless absent. */
  testConstants: {
    part: "constants",
    bind: (f: Export) => (s: KernelShape, p: Pointers, eps: number) => f(s.d, p.gamma, p.beta, eps, p.runMean, p.runVar, p.invStd, p.work),
  },
  /** out = (x − center)·scale + bias with the map at the start of the work area. */
  normalize: { part: "normalize", bind: (f: Export) => (s: KernelShape, p: Pointers) => f(p.x, s.n, s.d, s.S, p.work, p.out) },
  /** Column sums of dout and dout·(x − mean) of rows; dgamma, dbeta and the map for backwardApply. */
  backwardConstants: {
    part: "backward-constants",
    bind: (f: Export) => (form: number, s: KernelShape, p: Pointers) =>
      f(form, p.dout, p.x, s.n, s.d, p.gamma, p.mean, p.meanLo, p.invStd, p.dgamma, p.dbeta, p.work),
  },
  /** The same for channels-first runs (S > 1). */
  backwardPlaneConstants: {
    part: "backward-plane-constants",
    bind: (f: Export) => (form: number, s: KernelShape, p: Pointers) =>
      f(form, p.dout, p.x, s.n, s.d, s.S, p.gamma, p.mean, p.meanLo, p.invStd, p.dgamma, p.dbeta, p.work),
  },
  /** dx = a·((dout − m) − b·(x − mean)) with the map at the start of the work area. */
  backwardApply: {
    part: "backward-apply",
    bind: (f: Export) => (s: KernelShape, p: Pointers) => f(p.dout, p.x, s.n, s.d, s.S, p.mean, p.dx, p.work),
  },
  /** Adds `words` u32 words at p, from word `first` of a run, into the 32-byte state at `state`. Untyped: one export. */
  checksumWords: {
    part: "checksum",
    untyped: true,
    bind: (f: Export) => (p: number, words: number, first: number, state: number) => f(p, words, first, state),
  },
  /** LayerNorm/GroupNorm: out = x̂·gamma[c] + beta[c] with the statistics per (item, group). */
  groupApply: {
    part: "group-apply",
    bind: (f: Export) => (s: GroupShape, p: GroupPointers) =>
      f(p.x, s.n, s.G, s.K, s.S, p.mean, p.meanLo, p.invStd, p.gamma, p.beta, p.out),
  },
  /** LayerNorm/GroupNorm backward: dgamma, dbeta and (when p.dx) dx. */
  groupBackward: {
    part: "group-backward",
    bind: (f: Export) => (s: GroupShape, p: GroupPointers) =>
      f(p.dout, p.x, s.n, s.G, s.K, s.S, p.mean, p.meanLo, p.invStd, p.gamma, p.dx, p.dgamma, p.dbeta, p.work),
  },
  /**
   * The fused forward out = max(0, BN(x)) (assembly/activation.ts), its map from the step's
   * gamma, beta, mean, meanLo, invStd (test mode: runMean, 0, the running invStd).
   */
  normalizeRelu: {
    part: "normalize-relu",
    bind: (f: Export) => (s: KernelShape, p: Pointers) =>
      f(p.x, s.n, s.d, s.S, p.gamma, p.beta, p.mean, p.meanLo, p.invStd, p.work, p.out),
  },
  /** backwardConstants' sums with dout masked by the fused forward's out > 0, recomputed from x (and beta). */
  backwardConstantsRelu: {
    part: "backward-constants-relu",
    bind: (f: Export) => (form: number, s: KernelShape, p: Pointers) =>
      f(form, p.dout, p.x, s.n, s.d, p.gamma, p.beta, p.mean, p.meanLo, p.invStd, p.dgamma, p.dbeta, p.work),
  },
  /** The same for channels-first runs (S > 1). */
  backwardPlaneConstantsRelu: {
    part: "backward-plane-constants-relu",
    bind: (f: Export) => (form: number, s: KernelShape, p: Pointers) =>
      f(form, p.dout, p.x, s.n, s.d, s.S, p.gamma, p.beta, p.mean, p.meanLo, p.invStd, p.dgamma, p.dbeta, p.work),
  },
  /** After backwardConstantsRelu or backwardPlaneConstantsRelu (which leave only the sums): dgamma, dbeta and the map. */
  backwardReluMap: {
    part: "backward-relu-map",
    bind: (f: Export) => (form: number, s: KernelShape, p: Pointers) =>
      f(form, s.n, s.d, s.S, p.gamma, p.meanLo, p.invStd, p.dgamma, p.dbeta, p.work),
  },
  /** backwardApply with dout masked as in backwardConstantsRelu. */
  backwardApplyRelu: {
    part: "backward-apply-relu",
    bind: (f: Export) => (s: KernelShape, p: Pointers) =>
      f(p.dout, p.x, s.n, s.d, s.S, p.gamma, p.beta, p.mean, p.meanLo, p.invStd, p.dx, p.work),
  },
  /** From Σdout, Σdout·(x − mean) left in the work area by backwardConstants (summed over threads): dgamma, dbeta, the map. */
  backwardMap: {
    part: "backward-map",
    bind: (f: Export) => (form: number, count: number, s: KernelShape, p: Pointers) =>
      f(form, count, s.d, p.gamma, p.meanLo, p.invStd, p.dgamma, p.dbeta, p.work),
  },
  /**
   * Channels-last GroupNorm (assembly/groupnorm.ts): the moments of each (item, group), left
   * in the work area for trainConstants on n·G columns, as trainPlaneMoments leaves them.
   */
  groupMomentsChannelsLast: {
    part: "group-moments-last",
    bind: (f: Export) => (s: GroupShape, p: GroupPointers) => f(p.x, s.n, s.G, s.K, s.S, p.work),
  },
  /** groupApply for channels-last data. */
  groupApplyChannelsLast: {
    part: "group-apply-last",
    bind: (f: Export) => (s: GroupShape, p: GroupPointers) =>
      f(p.x, s.n, s.G, s.K, s.S, p.mean, p.meanLo, p.invStd, p.gamma, p.beta, p.out, p.work),
  },
  /** groupBackward for channels-last data. */
  groupBackwardChannelsLast: {
    part: "group-backward-last",
    bind: (f: Export) => (s: GroupShape, p: GroupPointers) =>
      f(p.dout, p.x, s.n, s.G, s.K, s.S, p.mean, p.meanLo, p.invStd, p.gamma, p.dx, p.dgamma, p.dbeta, p.work),
  },
  /**
   * Channels-first (S > 1): backwardPlaneConstantsRelu, backwardReluMap and backwardApplyRelu
   * channel by channel, each channel's runs read from memory once (src/tuning.ts,
   * CHANNEL_BACKWARD_BYTES); the same results. Writes dx, dgamma and dbeta.
   */
  backwardChannelsRelu: {
    part: "backward-channels-relu",
    bind: (f: Export) => (form: number, s: KernelShape, p: Pointers) =>
      f(form, p.dout, p.x, s.n, s.d, s.S, p.gamma, p.beta, p.mean, p.meanLo, p.invStd, p.dgamma, p.dbeta, p.dx, p.work),
  },
} as const;

export type KernelName = keyof typeof KERNELS;
/** A kernel's bound call. */
export type Bound<K extends KernelName> = ReturnType<(typeof KERNELS)[K]["bind"]>;
/** Kernels in this list that are not typed have one export, named as the kernel. */
export type TypedKernel = { [K in KernelName]: (typeof KERNELS)[K] extends { untyped: true } ? never : K }[KernelName];
/** The exports each module carries besides its kernels. */
export const EVERY_PART = ["heapBase"] as const;
/** Export names: the kernel's name and its element type. */
export const SUFFIX: Record<Dtype, string> = { float32: "F32", float64: "F64" };

/**
 * The kernels' view of LayerNorm/GroupNorm data: (n, G, K, S) contiguous, one statistic per
 * (item, group) over K·S values; channel g·K + k owns a run of S values (LayerNorm: G = 1,
 * K = D, S = 1; GroupNorm NCHW: K = C/G, S = H·W). See assembly/layernorm.ts. Channels-last
 * data is (n, S, G, K) instead: K adjacent values of a group at each position (groupnorm.ts).
 */
export interface GroupShape {
  n: number;
  G: number;
  K: number;
  S: number;
  /** (n, S, G, K) storage (NHWC, NLC); S > 1. */
  channelsLast: boolean;
}

/**
 * Byte addresses of a group-normalization step's arrays (0: absent): data n·G·K·S values,
 * statistics (mean, meanLo, variance, invStd) n·G, per-channel arrays (gamma, beta, dgamma, dbeta) G·K.
 * work: 2·G·K f64 for the backward.
 */
export interface GroupPointers {
  x: number; out: number; dout: number; dx: number;
  gamma: number; beta: number; mean: number; meanLo: number; variance: number; invStd: number;
  dgamma: number; dbeta: number; work: number;
}

/**
 * The statistics of LayerNorm/GroupNorm are the batch norm's channels-first moments with one
 * plane per (item, group): (1, n·G, K·S), and trainConstants on those n·G columns.
 */
export function groupRows(s: GroupShape): KernelShape {
  return { n: 1, d: s.n * s.G, S: s.K * s.S };
}

/** The batch norm kernels' pointers for a group step's statistics (groupRows). */
export function groupStatistics(p: GroupPointers): Pointers {
  return {
    x: p.x, out: 0, dout: 0, dx: 0, gamma: 0, beta: 0, runMean: 0, runVar: 0,
    mean: p.mean, meanLo: p.meanLo, variance: p.variance, invStd: p.invStd, dgamma: 0, dbeta: 0, work: p.work, checksum: 0,
  };
}

/** What every backend provides for a LayerNorm/GroupNorm/InstanceNorm step. */
export interface GroupKernels {
  /** Bytes of work area a forward or a backward of this shape takes (a float64 count). */
  workBytes(dtype: Dtype, shape: GroupShape): number;
  /** mean, meanLo, variance, invStd per statistic (n·G each) and out; gamma and beta are required. */
  forward(dtype: Dtype, shape: GroupShape, p: GroupPointers, eps: number): void;
  /** dgamma, dbeta and (when p.dx) dx from dout, x, mean, meanLo, invStd and gamma. */
  backward(dtype: Dtype, shape: GroupShape, p: GroupPointers): void;
}
