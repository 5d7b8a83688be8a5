// Synchronized batch normalization (data-parallel training, PyTorch's SyncBatchNorm): a batch
// split across workers is normalized with the statistics of the whole batch. This file gives
// the local steps and the merges; the transport (worker_threads, WebSockets, any all-reduce)
// is the caller's. Per training step, on every worker, shards in one fixed (rank) order:
//   1. stats = localStatistics(shard)                       -> every worker gets all of them
//   2. global = mergeStatistics(allStats)
//   3. { out, cache } = syncBatchnormForward(shard, gamma, beta, global, bnParam)
//   4. sums = localGradientSums(doutShard, cache)           -> every worker gets all of them
//   5. { dx, dgamma, dbeta } = syncBatchnormBackward(doutShard, cache, sumGradientSums(allSums))
// What travels is float64: [count, mean (D), M2 (D)] and [Σdout (D), Σdout·(x − mean) (D)].
// The per-column algebra is done here in float64; the sweeps over the data are the kernels'.
import { type ArrayOf, type Dtype, type FloatArray, arrayType, copyInto, copyOf, dtypeOf, unfilled } from "./dtype.js";
import { type ArrayName, blockPlan, pointersOf } from "./block.js";
import { BACKWARD_STEP, CHECKSUM_WORDS, type Pointers, TEST_STEP, TRAIN_STEP, type WorkStep } from "./kernels.js";
import { type RunningStatsRule, kerasPreset, pytorchPreset, runningStatsRule, stepFactors } from "./conventions.js";
import { type BackwardOutputs, type BackwardResult, type BNParam, DEFAULT_EPS, DEFAULT_MOMENTUM } from "./functional.js";
import { BatchNorm, type BatchNormOptions } from "./layer.js";
import { type Geometry, type Layout, channelsLast, checkLayout, geometry } from "./shape.js";
import * as check from "./validate.js";
import { ChangedInputError } from "./step.js";
import { type Engine, engine } from "./wasm.js";

/** Where a shard's values are and how they are laid out: as for spatialBatchnormForward. */
export interface SyncShapeOptions {
  /**
   * The shard's logical shape [N, C], [N, C, L] or [N, C, H, W] (whatever the layout); absent:
   * x is rows (N, C). N may be 0 (an empty shard).
   */
  shape?: readonly number[];
  /** How x is stored: 'NCHW' / 'NCL' (default) or 'NHWC' / 'NLC'. */
  layout?: Layout;
}

/** Options of syncBatchnormForward: the shard's shape and layout, and an array to write into. */
export interface SyncForwardOptions<A extends FloatArray = FloatArray> extends SyncShapeOptions {
  /** Where the output goes: the length of x. */
  out?: A;
}

/**
 * What a synchronized forward keeps for its backward: a reference to the shard (not a copy,
 * as batchnormForward's cache; a view of the engine's memory is copied, since that memory is
 * reused), a checksum of it, gamma, and the global statistics it normalized with. The local
 * gradient sums and the backward refuse a shard changed since the forward (ChangedInputError).
 */
export class SyncBatchnormCache<A extends FloatArray = FloatArray> {
  /** @internal */
  constructor(
    /** The forward's dtype. */
    readonly dtype: Dtype,
    /** The shard's shape as the kernels see it, and the caller's shape. */
    readonly geometry: Geometry,
    /** The forward's eps. */
    readonly eps: number,
    /** Values per feature in the whole batch (the merged count). */
    readonly count: number,
    /** @internal The shard (a reference; a copy when it was a view of the engine's memory). */
    readonly x: A,
    /** @internal gamma at the forward (null: 1). */
    readonly gamma: Float64Array | null,
    /** The global mean the forward normalized with (float64, one value per feature). */
    readonly mean: Float64Array,
    /** The global biased variance, M2 / count (float64, one value per feature). */
    readonly variance: Float64Array,
    /** 1/sqrt(variance + eps) (float64, one value per feature). */
    readonly invStd: Float64Array,
    /** @internal The mean rounded to the dtype (what the kernels subtract). */
    readonly center: A,
    /** @internal mean − center, in float64. */
    readonly centerLo: Float64Array,
    /** @internal The checksum of x at the time of the forward (zeros for an empty shard). */
    readonly checksum: Uint32Array,
  ) {}
}

/** The result of a synchronized forward: the shard's output and the cache for the backward. */
export interface SyncForwardResult<A extends FloatArray = FloatArray> {
  /** The normalized, scaled and shifted shard: a new array, or the options' `out`. */
  out: A;
  /** For localGradientSums and syncBatchnormBackward. */
  cache: SyncBatchnormCache<A>;
}

/** Every key of BNParam: any other is refused. */
const BN_PARAM_KEYS = [
  "mode", "eps", "momentum", "momentumConvention", "runningVariance", "runningMean", "runningVar", "numBatchesTracked",
] as const satisfies readonly (keyof BNParam)[];

/**
 * The local statistics of a shard as one Float64Array of 1 + 2·D values: [count, mean_0 ..
 * mean_{D−1}, M2_0 .. M2_{D−1}], M2 the sum of squared deviations from the shard's mean, per
 * feature (channel) over count = N·H·W values. An empty shard (N = 0) gives count 0 and zeros.
 */
export function localStatistics(x: FloatArray, numFeatures: number, options?: SyncShapeOptions): Float64Array {
  const d = check.positiveInteger("numFeatures", numFeatures);
  const dtype = dtypeOf(shardArray("x", x));
  const { shape, layout } = shapeOptions("localStatistics options", options, ["shape", "layout"]);
  const geo = shardGeometry(x.length, d, shape, layout);
  return statisticsOf(engine(), dtype, x, geo);
}

/**
 * Merges the statistics of shards (each as localStatistics returns them) into those of the
 * whole batch, in the order given (Chan et al.'s pairwise update, left to right): every worker
 * that merges the same arrays in the same order gets the same bits. Shards with count 0 take
 * part and change nothing. Returns a new array of the same format.
 */
export function mergeStatistics(parts: readonly Float64Array[]): Float64Array {
  if (!Array.isArray(parts) || parts.length === 0) throw new TypeError("mergeStatistics needs a non-empty array of statistics (Float64Array each)");
  const length = statisticsLength("parts[0]", parts[0]);
  const d = (length - 1) / 2;
  parts.forEach((part, k) => checkStatistics(`parts[${k}]`, part, d));
  const merged = new Float64Array(length);
  for (const part of parts) {
    const nB = part[0];
    if (nB === 0) continue;
    const nA = merged[0];
    if (nA === 0) {
      merged.set(part);
      continue;
    }
    const n = nA + nB;
    const wB = nB / n;
    const wAB = (nA * nB) / n;
    for (let j = 0; j < d; j++) {
      const delta = part[1 + j] - merged[1 + j];
      merged[1 + j] += delta * wB;
      merged[1 + d + j] += part[1 + d + j] + delta * delta * wAB;
    }
    merged[0] = n;
  }
  return merged;
}

/**
 * Train-mode forward of a shard with the given global statistics (mergeStatistics'): out =
 * gamma·(x − mean)/sqrt(M2/count + eps) + beta, and bnParam's running statistics moved by the
 * global mean and variance (the unbiased one with the global count, for runningVariance
 * 'unbiased', as PyTorch's SyncBatchNorm). bnParam.mode must be 'train' (test mode needs no
 * synchronization: use batchnormForward). Every worker must pass the same statistics and
 * bnParam state, so that their running statistics stay equal.
 */
export function syncBatchnormForward<A extends FloatArray>(
  x: A, gamma: A, beta: A, statistics: Float64Array, bnParam: BNParam<A>, options?: SyncForwardOptions<A>,
): SyncForwardResult<A> {
  const dtype = dtypeOf(shardArray("x", x));
  const d = check.floatArray("gamma", gamma, dtype).length;
  check.floatArray("beta", beta, dtype);
  if (beta.length !== d) {
    throw new RangeError(`gamma and beta must have one value per feature, D each: gamma has length ${d}, beta ${beta.length}`);
  }
  const { shape, layout, out: givenOut } = shapeOptions("syncBatchnormForward options", options, ["shape", "layout", "out"]);
  const geo = shardGeometry(x.length, d, shape, layout);
  const count = globalCount("statistics", statistics, d, geo.count);
  if (bnParam === null || typeof bnParam !== "object") {
    throw new TypeError(`bnParam must be an object like { mode: 'train' }, got ${bnParam === null ? "null" : typeof bnParam}`);
  }
  check.knownKeys("bnParam", bnParam, BN_PARAM_KEYS);
  if (check.mode(bnParam.mode) !== "train") {
    throw new RangeError("syncBatchnormForward normalizes with batch statistics: bnParam.mode must be 'train' (test mode needs no synchronization: use batchnormForward)");
  }
  const eps = check.eps(bnParam.eps ?? DEFAULT_EPS);
  const rule = runningStatsRule(bnParam, "bnParam.", DEFAULT_MOMENTUM);
  const tracked = bnParam.numBatchesTracked ?? 0;
  if (!Number.isInteger(tracked) || tracked < 0) {
    throw new RangeError(`bnParam.numBatchesTracked must be a whole number ≥ 0, got ${check.shown(bnParam.numBatchesTracked)}`);
  }
  const given = (key: "runningMean" | "runningVar") => (bnParam[key] === undefined
    ? null
    : check.floatArrayOfLength(`bnParam.${key}`, bnParam[key], dtype, d, "D = gamma.length"));
  const runMean = given("runningMean");
  const runVar = given("runningVar");
  const factors = stepFactors(rule, tracked + 1, count, geo.shape);
  const countsBatches = rule.momentum === null || bnParam.numBatchesTracked !== undefined;
  if (!runMean) check.settable("bnParam", bnParam, "runningMean");
  if (!runVar) check.settable("bnParam", bnParam, "runningVar");
  if (countsBatches) check.settable("bnParam", bnParam, "numBatchesTracked");
  const inputs = { x, gamma, beta, "bnParam.runningMean": runMean, "bnParam.runningVar": runVar };
  const out = givenOut ? check.output("options.out", givenOut, dtype, x.length, inputs, []) : unfilled(dtype === "float64", x.length);

  // New running statistics start as zeros (CS231n), as batchnormForward's.
  const newMean = runMean ? null : new (arrayType(dtype))(d);
  const newVar = runVar ? null : new (arrayType(dtype))(d);
  const cache = normalizeShard(engine(), dtype, x, geo, gamma, beta, statistics, count, eps, out);
  updateRunning(cache, runMean ?? newMean!, runVar ?? newVar!, factors);
  if (newMean) bnParam.runningMean = newMean as A;
  if (newVar) bnParam.runningVar = newVar as A;
  if (countsBatches) bnParam.numBatchesTracked = tracked + 1;
  return { out: out as A, cache: cache as SyncBatchnormCache<A> };
}

/**
 * The local sums of a shard's backward as one Float64Array of 2·D values: [Σdout (D),
 * Σdout·(x − mean) (D)], mean the global one of the forward. Sum them over the workers
 * (sumGradientSums) and pass the sum to syncBatchnormBackward.
 */
export function localGradientSums<A extends FloatArray>(dout: A, cache: SyncBatchnormCache<A>): Float64Array {
  checkCache("localGradientSums", dout, cache);
  return gradientSumsOf(engine(), dout, cache);
}

/**
 * The elementwise sum of the workers' local gradient sums (localGradientSums'), left to
 * right in the order given: every worker that sums the same arrays in the same order gets
 * the same bits. Returns a new array.
 */
export function sumGradientSums(parts: readonly Float64Array[]): Float64Array {
  if (!Array.isArray(parts) || parts.length === 0) throw new TypeError("sumGradientSums needs a non-empty array of gradient sums (Float64Array each)");
  const first = parts[0];
  if (!(first instanceof Float64Array) || first.length === 0 || first.length % 2 !== 0) {
    throw new RangeError(`parts[0] must be a Float64Array of 2·D values [Σdout, Σdout·(x − mean)], got ${describeLength(first)}`);
  }
  const total = new Float64Array(first.length);
  parts.forEach((part, k) => {
    if (!(part instanceof Float64Array) || part.length !== first.length) {
      throw new RangeError(`parts[${k}] must be a Float64Array of ${first.length} values (as parts[0]), got ${describeLength(part)}`);
    }
  });
  for (const part of parts) for (let i = 0; i < total.length; i++) total[i] += part[i];
  return total;
}

/**
 * Backward of a shard from the summed gradient sums (sumGradientSums' of every worker's
 * localGradientSums) and the global count: the shard's dx, and the global dgamma and dbeta
 * (the same on every worker). Outputs given are written into and returned.
 */
export function syncBatchnormBackward<A extends FloatArray>(
  dout: A, cache: SyncBatchnormCache<A>, sums: Float64Array, outputs?: BackwardOutputs<A>,
): BackwardResult<A> {
  checkCache("syncBatchnormBackward", dout, cache);
  const { dtype, geometry: geo } = cache;
  const d = geo.d;
  checkSums("sums", sums, d);
  const given = shapeOptions("syncBatchnormBackward outputs", outputs, ["dx", "dgamma", "dbeta"]) as BackwardOutputs;
  const size = cache.x.length;
  const f64 = dtype === "float64";
  const result = {
    dx: given.dx ? check.output("outputs.dx", given.dx, dtype, size, {}, ["dout"]) : unfilled(f64, size),
    dgamma: given.dgamma ? check.output("outputs.dgamma", given.dgamma, dtype, d, { sums, "outputs.dx": given.dx }, []) : unfilled(f64, d),
    dbeta: given.dbeta ? check.output("outputs.dbeta", given.dbeta, dtype, d, { sums, "outputs.dx": given.dx, "outputs.dgamma": given.dgamma }, []) : unfilled(f64, d),
  };
  backwardShard(engine(), dout, cache, sums, result.dx, result.dgamma, result.dbeta);
  return result as BackwardResult<A>;
}

/**
 * A BatchNorm for data-parallel training: each worker holds one, with the same parameters and
 * state, and calls the synchronized steps on its shard (see localStatistics ..
 * syncBatchnormBackward for the order). forward() and backward() are BatchNorm's own (eval
 * mode, or one process); backwardSync differentiates the last forwardSync.
 */
export class SyncBatchNorm<D extends Dtype = "float32"> extends BatchNorm<D> {
  private syncCache: SyncBatchnormCache<ArrayOf<D>> | null = null;

  /** PyTorch's SyncBatchNorm's defaults and names (as BatchNorm.fromPyTorch). */
  static override fromPyTorch<D extends Dtype = "float32">(options: {
    num_features: number; eps?: number; momentum?: number | null; affine?: boolean; track_running_stats?: boolean; dtype?: D;
  }): SyncBatchNorm<D> {
    const { numFeatures, options: converted } = pytorchPreset(options);
    return new SyncBatchNorm<D>(numFeatures, converted as BatchNormOptions<D>);
  }

  /** Keras' BatchNormalization's defaults and names (as BatchNorm.fromKeras). */
  static override fromKeras<D extends Dtype = "float32">(numFeatures: number, options: {
    axis?: number; momentum?: number; epsilon?: number; center?: boolean; scale?: boolean; dtype?: D;
  } = {}): SyncBatchNorm<D> {
    return new SyncBatchNorm<D>(numFeatures, kerasPreset(options) as BatchNormOptions<D>);
  }

  /** The shard's local statistics (see localStatistics); shape as for forward, N may be 0. */
  localStatistics(x: ArrayOf<D>, shape?: readonly number[]): Float64Array {
    shardArray("x", x, this.dtype);
    return statisticsOf(this.engine, this.dtype, x, shardGeometry(x.length, this.numFeatures, shape, this.layout));
  }

  /**
   * Normalizes the shard with the global statistics (mergeStatistics') and, when the layer
   * keeps running statistics, moves them by the global ones. Train mode, or eval mode without
   * running statistics (trackRunningStats false); otherwise use forward().
   */
  forwardSync(x: ArrayOf<D>, statistics: Float64Array, options?: { shape?: readonly number[]; out?: ArrayOf<D> }): ArrayOf<D> {
    shardArray("x", x, this.dtype, "this layer");
    const { shape, out: givenOut } = shapeOptions("forwardSync options", options, ["shape", "out"]) as { shape?: readonly number[]; out?: FloatArray };
    const geo = shardGeometry(x.length, this.numFeatures, shape, this.layout);
    const count = globalCount("statistics", statistics, this.numFeatures, geo.count);
    if (!this.training && this.trackRunningStats) {
      throw new Error("forwardSync in eval mode: the layer normalizes with its running statistics there, which needs no synchronization: use forward()");
    }
    const state = this.checkedState();
    const eps = check.eps(this.eps, "layer.eps");
    const update = this.training && this.trackRunningStats;
    const rule: RunningStatsRule = this.rule();
    const factors = update ? stepFactors(rule, this.numBatchesTracked + 1, count, geo.shape) : null;
    const params = { gamma: state.gamma, beta: state.beta, "layer.runningMean": state.runningMean, "layer.runningVar": state.runningVar };
    const out = givenOut ? check.output("options.out", givenOut, this.dtype, x.length, { x, ...params }, []) : unfilled(this.dtype === "float64", x.length);
    const cache = normalizeShard(
      this.engine, this.dtype, x, geo, this.useGamma ? state.gamma : null, this.useBeta ? state.beta : null, statistics, count, eps, out,
    );
    if (factors) {
      updateRunning(cache, state.runningMean, state.runningVar, factors);
      this.numBatchesTracked++;
    }
    this.syncCache = cache as SyncBatchnormCache<ArrayOf<D>>;
    return out as ArrayOf<D>;
  }

  /** The local gradient sums of the last forwardSync's shard (see localGradientSums). */
  gradientSums(dout: ArrayOf<D>): Float64Array {
    const cache = this.lastSync();
    return gradientSumsOf(this.engine, checkCache("gradientSums", dout, cache), cache);
  }

  /**
   * dx of the last forwardSync's shard from the summed gradient sums; sets the layer's dgamma
   * and dbeta (the global ones). Returns a new array, or `options.dx` filled.
   */
  backwardSync(dout: ArrayOf<D>, sums: Float64Array, options?: { dx?: ArrayOf<D> }): ArrayOf<D> {
    const cache = this.lastSync();
    checkCache("backwardSync", dout, cache);
    checkSums("sums", sums, this.numFeatures);
    const { dx: givenDx } = shapeOptions("backwardSync options", options, ["dx"]) as { dx?: FloatArray };
    const targets = this.gradientTargets();
    const dx = givenDx
      ? check.output("options.dx", givenDx, this.dtype, cache.x.length, { "layer.dgamma": targets.dgamma, "layer.dbeta": targets.dbeta }, ["dout"])
      : unfilled(this.dtype === "float64", cache.x.length);
    backwardShard(this.engine, dout, cache, sums, dx, targets.dgamma, targets.dbeta);
    return dx as ArrayOf<D>;
  }

  private lastSync(): SyncBatchnormCache<ArrayOf<D>> {
    if (!this.syncCache) throw new Error("SyncBatchNorm: gradientSums and backwardSync need a forwardSync first");
    return this.syncCache;
  }
}

// ---- Checks -------------------------------------------------------------------------------

/** A float array that may be empty (an empty shard); dtype as check.floatArray. */
function shardArray(name: string, value: unknown, dtype?: Dtype, dtypeFrom?: string): FloatArray {
  if ((value instanceof Float32Array || value instanceof Float64Array) && value.length === 0) {
    if (dtype !== undefined && dtypeOf(value) !== dtype) check.floatArray(name, dtype === "float64" ? new Float32Array(1) : new Float64Array(1), dtype, dtypeFrom);
    return value;
  }
  return check.floatArray(name, value, dtype, dtypeFrom);
}

/** An options object with only `keys` (or undefined: {}). */
function shapeOptions(name: string, value: unknown, keys: readonly string[]): SyncForwardOptions & BackwardOutputs & { layout: Layout } {
  if (value === undefined) return { layout: "NCHW" };
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value) || Array.isArray(value)) {
    throw new TypeError(`${name} must be an object like { ${keys.join(", ")} }, got ${check.shown(value)}`);
  }
  check.knownKeys(name, value, keys);
  const options = value as SyncForwardOptions & BackwardOutputs;
  return { ...options, layout: checkLayout(options.layout ?? "NCHW", `${name}.layout`) };
}

/** The geometry of a shard, which may be empty (N = 0: shape [0, C, ...], or no values without a shape). */
function shardGeometry(length: number, d: number, shape: readonly number[] | undefined, layout: Layout): Geometry {
  if (length > 0) return geometry(length, d, shape, layout);
  if (shape === undefined) return { shape: [0, d], n: 0, d, S: 1, count: 0 };
  if (!Array.isArray(shape) || shape.length < 2 || shape.length > 4 || shape[0] !== 0) {
    throw new RangeError(`x is empty: shape must be [0, C], [0, C, L] or [0, C, H, W], got ${JSON.stringify(shape)}`);
  }
  shape.slice(1).forEach((v, i) => check.positiveInteger(`shape[${i + 1}]`, v));
  if (shape[1] !== d) throw new RangeError(`shape[1] must be the number of channels, ${d}, got ${shape[1]}`);
  const spatial = shape.slice(2).reduce((a, b) => a * b, 1);
  return { shape: [...shape], n: 0, d, S: channelsLast(layout) ? 1 : spatial, count: 0 };
}

function describeLength(value: unknown): string {
  return value instanceof Float64Array ? `length ${value.length}` : check.shown(value);
}

/** The length 1 + 2·D of a statistics array. */
function statisticsLength(name: string, value: unknown): number {
  if (!(value instanceof Float64Array) || value.length < 3 || value.length % 2 !== 1) {
    throw new RangeError(`${name} must be a Float64Array of 1 + 2·D values [count, mean (D), M2 (D)] (localStatistics'), got ${describeLength(value)}`);
  }
  return value.length;
}

/** Statistics of D features: the length, a whole count ≥ 0, no negative M2. */
function checkStatistics(name: string, value: unknown, d: number): Float64Array {
  const length = statisticsLength(name, value);
  if (length !== 1 + 2 * d) {
    throw new RangeError(`${name} has ${(length - 1) / 2} features (length ${length}), expected D = ${d} (length ${1 + 2 * d}): shards of different layers?`);
  }
  const stats = value as Float64Array;
  if (!Number.isSafeInteger(stats[0]) || stats[0] < 0) throw new RangeError(`${name}[0], the count, must be a whole number ≥ 0, got ${stats[0]}`);
  for (let j = 0; j < d; j++) {
    if (stats[1 + d + j] < 0) throw new RangeError(`${name}: M2 of feature ${j} is negative (${stats[1 + d + j]}): not statistics of localStatistics`);
  }
  return stats;
}

/** The count of global statistics for a shard of `local` values per feature. */
function globalCount(name: string, value: unknown, d: number, local: number): number {
  const count = checkStatistics(name, value, d)[0];
  if (count === 0) throw new RangeError(`${name} has count 0: every shard is empty, there is nothing to normalize with`);
  if (count < local) {
    throw new RangeError(`${name} has count ${count}, fewer than this shard's ${local} values per feature: pass the merged statistics of every shard (mergeStatistics)`);
  }
  return count;
}

function checkSums(name: string, value: unknown, d: number): void {
  if (!(value instanceof Float64Array) || value.length !== 2 * d) {
    throw new RangeError(`${name} must be a Float64Array of 2·D = ${2 * d} values [Σdout, Σdout·(x − mean)] (sumGradientSums'), got ${describeLength(value)}`);
  }
}

function checkCache<A extends FloatArray>(name: string, dout: A, cache: SyncBatchnormCache<A>): A {
  if (!(cache instanceof SyncBatchnormCache)) {
    throw new TypeError(`${name}: cache must be the cache returned by syncBatchnormForward, got ${check.shown(cache)}`);
  }
  shardArray("dout", dout, cache.dtype);
  if (dout.length !== cache.x.length) {
    throw new RangeError(`dout must have length ${cache.x.length} (shape [${cache.geometry.shape.join(", ")}], the shard of the forward), got length ${dout.length}`);
  }
  return dout;
}

// ---- Steps --------------------------------------------------------------------------------

/**
 * Runs `run` on a scratch block holding `names` for the shard, after copying `inputs` (name,
 * array) in; as step.ts: reserve, then views (inputs that are views of the engine's memory
 * re-derived after growth), copy in, run. `run` copies its results out.
 */
function inBlock(
  e: Engine, dtype: Dtype, geo: Geometry, names: readonly ArrayName[], step: WorkStep,
  inputs: [ArrayName, FloatArray][], run: (p: Pointers, all: FloatArray, at: (ptr: number) => number) => void,
): void {
  const plan = blockPlan(e, dtype, geo, names, [step]);
  const pins = inputs.map(([, a]) => e.heap.pin(a));
  const base = e.heap.scratch(plan.bytes);
  const p = pointersOf(plan, base);
  const all = e.heap.all(dtype);
  const size = dtype === "float64" ? 8 : 4;
  const at = (ptr: number) => ptr / size;
  inputs.forEach(([name], k) => copyInto(all, at(p[name as keyof Pointers]), pins[k](), 0, inputs[k][1].length));
  run(p, all, at);
}

/** The checksum of the x at p.x (the shard's values) into `into`. */
function checksumOf(e: Engine, dtype: Dtype, p: Pointers, values: number, into: Uint32Array): void {
  const state = new Uint32Array(e.heap.buffer, p.checksum, CHECKSUM_WORDS).fill(0);
  e.kernels.checksum(p.x, (values * (dtype === "float64" ? 8 : 4)) / 4, 0, p.checksum);
  into.set(state);
}

/** Refuses a shard changed since the forward: its checksum, at p.x, against the cache's. */
function checkUnchanged(e: Engine, p: Pointers, cache: SyncBatchnormCache): void {
  const now = new Uint32Array(CHECKSUM_WORDS);
  checksumOf(e, cache.dtype, p, cache.x.length, now);
  if (now.some((v, i) => v !== cache.checksum[i])) {
    throw new ChangedInputError(
      "x was changed after the synchronized forward whose cache this is (the cache refers to x, as batchnormForward's does): run the forward again, or pass it a copy",
    );
  }
}

function statisticsOf(e: Engine, dtype: Dtype, x: FloatArray, geo: Geometry): Float64Array {
  const d = geo.d;
  const stats = new Float64Array(1 + 2 * d);
  stats[0] = geo.count;
  if (geo.count === 0) return stats;
  const moments = new Float64Array(3 * d);
  inBlock(e, dtype, geo, ["x"], TRAIN_STEP, [["x", x]], (p) => e.kernels.moments(dtype, geo, p, moments));
  for (let j = 0; j < d; j++) {
    stats[1 + j] = moments[j] + moments[d + j];
    // variance = M2/count to float64 rounding: the product gives M2 back to a rounding or two.
    stats[1 + d + j] = moments[2 * d + j] * geo.count;
  }
  return stats;
}

/** The forward of a shard with global statistics (validated): out written, the cache returned. */
function normalizeShard(
  e: Engine, dtype: Dtype, x: FloatArray, geo: Geometry, gamma: FloatArray | null, beta: FloatArray | null,
  statistics: Float64Array, count: number, eps: number, out: FloatArray,
): SyncBatchnormCache {
  const d = geo.d;
  const round = dtype === "float64" ? (v: number) => v : Math.fround;
  const mean = statistics.slice(1, 1 + d);
  const variance = new Float64Array(d);
  const invStd = new Float64Array(d);
  const center = new (arrayType(dtype))(d);
  const centerLo = new Float64Array(d);
  // The map of the train step's trainConstants: subtract the mean rounded to the dtype, fold
  // what that rounding lost into the bias (assembly/normalize.ts).
  const map = new Float64Array(3 * d);
  for (let j = 0; j < d; j++) {
    variance[j] = statistics[1 + d + j] / count;
    invStd[j] = 1 / Math.sqrt(variance[j] + eps);
    center[j] = mean[j];
    centerLo[j] = mean[j] - center[j];
    const scale = round((gamma ? gamma[j] : 1) * invStd[j]);
    map[j] = center[j];
    map[d + j] = scale;
    map[2 * d + j] = (beta ? beta[j] : 0) - centerLo[j] * scale;
  }
  const checksum = new Uint32Array(CHECKSUM_WORDS);
  // The engine reuses its memory: a view of it is copied, any other x referred to.
  const inEngine = e.heap.owns(x);
  const input = e.heap.pin(x);
  if (geo.count > 0) {
    inBlock(e, dtype, geo, ["x", "out", "checksum"], TEST_STEP, [["x", x]], (p, all, at) => {
      checksumOf(e, dtype, p, x.length, checksum);
      e.kernels.normalizeWith(dtype, geo, p, map);
      copyInto(out, 0, all, at(p.out), out.length);
    });
  }
  const kept = inEngine ? copyOf(input()) : x;
  return new SyncBatchnormCache(
    dtype, geo, eps, count, kept, gamma ? Float64Array.from(gamma) : null, mean, variance, invStd, center, centerLo, checksum,
  );
}

/** running = momentum·running + (1 − momentum)·global, the variance × runVarScale (as trainConstants). */
function updateRunning(cache: SyncBatchnormCache, runMean: FloatArray, runVar: FloatArray, f: { momentum: number; runVarScale: number }): void {
  const { momentum, runVarScale } = f;
  for (let j = 0; j < cache.geometry.d; j++) {
    runMean[j] = momentum * runMean[j] + (1 - momentum) * cache.mean[j];
    runVar[j] = momentum * runVar[j] + (1 - momentum) * cache.variance[j] * runVarScale;
  }
}

function gradientSumsOf(e: Engine, dout: FloatArray, cache: SyncBatchnormCache): Float64Array {
  const { dtype, geometry: geo } = cache;
  const d = geo.d;
  const sums = new Float64Array(2 * d);
  if (geo.count === 0) return sums;
  inBlock(e, dtype, geo, ["dout", "x", "mean", "meanLo", "invStd", "checksum"], BACKWARD_STEP, [["dout", dout], ["x", cache.x], ["mean", cache.center]], (p) => {
    checkUnchanged(e, p, cache);
    e.kernels.backwardSums(dtype, geo, p, sums);
  });
  // The kernel's sums are about the rounded mean: Σdout·(x − mean) = Σdout·(x − center) − lo·Σdout.
  for (let j = 0; j < d; j++) sums[d + j] -= cache.centerLo[j] * sums[j];
  return sums;
}

/**
 * dx of the shard, and the global dgamma and dbeta (each null to skip), from the summed sums:
 * the compact form dx = γ·invStd·((dout − Σdout/N) − (dγ·invStd/N)·(x − mean)), N global.
 */
function backwardShard(
  e: Engine, dout: FloatArray, cache: SyncBatchnormCache, sums: Float64Array, dx: FloatArray, dgamma: FloatArray | null, dbeta: FloatArray | null,
): void {
  const { dtype, geometry: geo, count, invStd, centerLo } = cache;
  const d = geo.d;
  const map = new Float64Array(3 * d);
  const invN = 1 / count;
  const dGamma = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    const inv = invStd[j];
    dGamma[j] = sums[d + j] * inv;
    const mb = dGamma[j] * inv * invN;
    map[j] = (cache.gamma ? cache.gamma[j] : 1) * inv;
    // The kernel subtracts the rounded mean: (x − mean) = (x − center) − lo.
    map[d + j] = sums[j] * invN - mb * centerLo[j];
    map[2 * d + j] = mb;
  }
  if (geo.count > 0) {
    inBlock(e, dtype, geo, ["dout", "x", "dx", "mean", "checksum"], BACKWARD_STEP, [["dout", dout], ["x", cache.x], ["mean", cache.center]], (p, all, at) => {
      checkUnchanged(e, p, cache);
      e.kernels.backwardApplyWith(dtype, geo, p, map);
      copyInto(dx, 0, all, at(p.dx), dx.length);
    });
  }
  if (dgamma) for (let j = 0; j < d; j++) dgamma[j] = dGamma[j];
  if (dbeta) for (let j = 0; j < d; j++) dbeta[j] = sums[j];
}
