// The CS231n-style functional API: batchnormForward / batchnormBackward(Alt) for (N, D)
// data and spatialBatchnormForward / spatialBatchnormBackward for (N, C, H, W) or (N, C, L).
// Each call validates, then runs one step (step.ts): its inputs are copied into scratch memory,
// the kernels run, and the results are copied out into new arrays that belong to the caller,
// so a training loop reuses the same memory every step. (For a loop that copies nothing, see
// the workspace, workspace.ts.)
import { type Dtype, type FloatArray, arrayType, dtypeOf, unfilled } from "./dtype.js";
import { type RunningStatsOptions, runningStatsRule, stepFactors } from "./conventions.js";
import { rememberedPlan } from "./block.js";
import { BACKWARD_STEP, type BackwardForm, COMPACT_FORM, GRAPH_FORM, TEST_STEP, TRAIN_STEP } from "./kernels.js";
import { type Geometry, type Layout, checkLayout, geometry } from "./shape.js";
import { SAVED, runBackward, runForward } from "./step.js";
import * as check from "./validate.js";
import { engine } from "./wasm.js";

/** The state object of the functional API, as CS231n's bn_param; any key not declared here is refused. */
export interface BNParam<A extends FloatArray = FloatArray> extends RunningStatsOptions {
  mode: "train" | "test";
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** Created as zeros by the first train call when absent (CS231n); updated in place in train mode. */
  runningMean?: A;
  runningVar?: A;
  /** Train calls so far; kept here when momentum is null (the cumulative average). */
  numBatchesTracked?: number;
}

/** Every key of BNParam: any other is refused (see check.knownKeys). */
const BN_PARAM_KEYS = [
  "mode", "eps", "momentum", "momentumConvention", "runningVariance", "runningMean", "runningVar", "numBatchesTracked",
] as const satisfies readonly (keyof BNParam)[];

export const DEFAULT_EPS = 1e-5;
export const DEFAULT_MOMENTUM = 0.9;

/** The per-column values a train-mode forward keeps, after x: SAVED.length rows of D values. */
const STATS_ROWS = SAVED.length;
const row = (name: (typeof SAVED)[number]) => SAVED.indexOf(name);

/** What a train-mode forward keeps for the backward pass. Holds copies: nothing the caller changes later affects it. */
export class BatchnormCache<A extends FloatArray = FloatArray> {
  /** @internal */
  constructor(
    readonly dtype: Dtype,
    /** The data's shape as the kernels see it (see shape.ts), and the caller's shape. */
    readonly geometry: Geometry,
    readonly eps: number,
    /**
     * @internal The input x, then STATS_ROWS·D per-column values (see STATS), in one array
     * as the backward's block holds them: one allocation and one copy each way.
     */
    readonly saved: A,
  ) {}

  private part(from: number, length: number): A {
    return this.saved.subarray(from, from + length) as A;
  }
  private row(k: number): A {
    const d = this.geometry.d;
    return this.part(this.saved.length - (STATS_ROWS - k) * d, d);
  }
  /** The input, copied. */
  get x(): A {
    return this.part(0, this.saved.length - STATS_ROWS * this.geometry.d);
  }
  /** gamma at the time of the forward, copied. */
  get gamma(): A {
    return this.row(row("gamma"));
  }
  get mean(): A {
    return this.row(row("mean"));
  }
  /** mean + meanLo is the batch mean to twice the input's precision (see assembly/normalize.ts). */
  get meanLo(): A {
    return this.row(row("meanLo"));
  }
  get variance(): A {
    return this.row(row("variance"));
  }
  get invStd(): A {
    return this.row(row("invStd"));
  }
}

export interface ForwardResult<A extends FloatArray = FloatArray> {
  out: A;
  /** null in test mode. */
  cache: BatchnormCache<A> | null;
}

export interface BackwardResult<A extends FloatArray = FloatArray> {
  dx: A;
  dgamma: A;
  dbeta: A;
}

/** Batch normalization of row-major (N, D) x, D = gamma.length, as in CS231n. */
export function batchnormForward<A extends FloatArray>(x: A, gamma: A, beta: A, bnParam: BNParam<A>): ForwardResult<A> {
  return forward(x, gamma, beta, bnParam as BNParam, undefined, "NCHW") as ForwardResult<A>;
}

/**
 * Spatial batch normalization: statistics per channel over N and the spatial positions.
 * shape is [N, C, H, W] or [N, C, L], always in that order; layout says how x is stored:
 * 'NCHW' / 'NCL' (channels first, default) or 'NHWC' / 'NLC' (channels last).
 */
export function spatialBatchnormForward<A extends FloatArray>(
  x: A, gamma: A, beta: A, bnParam: BNParam<A>, shape: readonly number[], dataLayout: Layout = "NCHW",
): ForwardResult<A> {
  if (!Array.isArray(shape)) throw new RangeError(`shape must be [N, C, H, W] or [N, C, L], got ${JSON.stringify(shape)}`);
  return forward(x, gamma, beta, bnParam as BNParam, shape, checkLayout(dataLayout)) as ForwardResult<A>;
}

function forward(x: FloatArray, gamma: FloatArray, beta: FloatArray, bnParam: BNParam, shape: readonly number[] | undefined, dataLayout: Layout): ForwardResult {
  // 1. Validate everything before anything is reserved, copied or written.
  check.floatArray("x", x);
  const dtype = dtypeOf(x);
  const g = check.floatArray("gamma", gamma, dtype);
  const d = g.length;
  const geo = geometry(x.length, d, shape, dataLayout);
  check.floatArrayOfLength("beta", beta, dtype, d, "D = gamma.length");
  if (bnParam === null || typeof bnParam !== "object") {
    throw new TypeError(`bnParam must be an object like { mode: 'train' }, got ${bnParam === null ? "null" : typeof bnParam}`);
  }
  check.knownKeys("bnParam", bnParam, BN_PARAM_KEYS);
  const mode = check.mode(bnParam.mode);
  const eps = check.eps(bnParam.eps ?? DEFAULT_EPS);
  const rule = runningStatsRule(bnParam, "bnParam.", DEFAULT_MOMENTUM);
  const tracked = bnParam.numBatchesTracked ?? 0;
  if (!Number.isInteger(tracked) || tracked < 0) {
    throw new RangeError(`bnParam.numBatchesTracked must be a whole number ≥ 0, got ${check.shown(bnParam.numBatchesTracked)}`);
  }
  const runningShape = "D = gamma.length";
  if (mode === "test" && (bnParam.runningMean === undefined || bnParam.runningVar === undefined)) {
    throw new TypeError("bnParam.runningMean and bnParam.runningVar are required in test mode (a train call creates them)");
  }
  const given = (key: "runningMean" | "runningVar") => (bnParam[key] === undefined && mode === "train"
    ? null
    : check.floatArrayOfLength(`bnParam.${key}`, bnParam[key], dtype, d, runningShape));
  const runMean = given("runningMean");
  const runVar = given("runningVar");
  const train = mode === "train";
  const step = train ? stepFactors(rule, tracked + 1, geo.count, geo.shape) : null;
  const countsBatches = rule.momentum === null || bnParam.numBatchesTracked !== undefined;
  if (train) {
    if (!runMean) check.settable("bnParam", bnParam, "runningMean");
    if (!runVar) check.settable("bnParam", bnParam, "runningVar");
    if (countsBatches) check.settable("bnParam", bnParam, "numBatchesTracked");
  }

  const size = x.length;
  const f64 = x instanceof Float64Array;
  const out = unfilled(f64, size);
  if (!train) {
    runForward(engine(), {
      dtype, shape: geo, statistics: "running", factors: { eps, momentum: 1, runVarScale: 1 }, update: false,
      params: { gamma: g, beta, runMean, runVar },
    }, { x, out, saved: null }, (rows) => testPlan(engine(), dtype, { n: rows, d, S: geo.S }), null);
    return { out, cache: null };
  }
  // A train step moves the running statistics in place: new ones start as zeros (CS231n).
  const newMean = runMean ? null : new (arrayType(dtype))(d);
  const newVar = runVar ? null : new (arrayType(dtype))(d);
  const saved = unfilled(f64, size + SAVED.length * d);
  saved.set(x);
  runForward(engine(), {
    dtype, shape: geo, statistics: "batch", factors: { eps, ...step! }, update: true,
    params: { gamma: g, beta, runMean: runMean ?? newMean, runVar: runVar ?? newVar },
  }, { x, out, saved: saved.subarray(size) }, () => trainPlan(engine(), dtype, geo), null);
  // 6. State back only once the step has run.
  if (newMean) bnParam.runningMean = newMean;
  if (newVar) bnParam.runningVar = newVar;
  if (countsBatches) bnParam.numBatchesTracked = tracked + 1;
  return { out, cache: new BatchnormCache(dtype, geo, eps, saved) };
}

const trainPlan = rememberedPlan(["x", "out", "gamma", "beta", "runMean", "runVar", "mean", "meanLo", "variance", "invStd"], [TRAIN_STEP]);
const testPlan = rememberedPlan(["x", "out", "gamma", "beta", "runMean", "runVar"], [TEST_STEP]);
const backwardPlan = rememberedPlan(["dout", "x", "dx", "gamma", "mean", "meanLo", "invStd", "dgamma", "dbeta"], [BACKWARD_STEP]);

function backwardWithForm<A extends FloatArray>(form: BackwardForm, name: string, dout: A, cache: BatchnormCache<A>): BackwardResult<A> {
  if (!(cache instanceof BatchnormCache)) {
    throw new TypeError(`${name}: cache must be the cache returned by a train-mode forward, got ${cache === null ? "null" : typeof cache}`);
  }
  const { dtype, geometry: geo } = cache;
  const { d, shape } = geo;
  check.floatArray("dout", dout, dtype);
  const size = cache.saved.length - SAVED.length * d;
  if (dout.length !== size) {
    const described = shape.length === 2 ? `N = ${shape[0]} by D = ${shape[1]}` : `[${shape.join(", ")}]`;
    throw new RangeError(`dout must have length ${size} (${described}, the shape of the cached forward), got length ${dout.length}`);
  }
  const f64 = dtype === "float64";
  const result = { dx: unfilled(f64, size), dgamma: unfilled(f64, d), dbeta: unfilled(f64, d) };
  runBackward(engine(), { dtype, shape: geo, form }, {
    dout, x: cache.x, saved: cache.saved.subarray(size), hasGamma: true, ...result,
  }, backwardPlan(engine(), dtype, geo), null);
  return result as BackwardResult<A>;
}

/** Backward through the computational graph (x̂, dvar, dmean), as derived step by step in CS231n. */
export function batchnormBackward<A extends FloatArray>(dout: A, cache: BatchnormCache<A>): BackwardResult<A> {
  return backwardWithForm(GRAPH_FORM, "batchnormBackward", dout, cache);
}

/** Backward in the compact form dx = (γ·invStd/N)·(N·dout − Σdout − x̂·Σ(dout·x̂)). */
export function batchnormBackwardAlt<A extends FloatArray>(dout: A, cache: BatchnormCache<A>): BackwardResult<A> {
  return backwardWithForm(COMPACT_FORM, "batchnormBackwardAlt", dout, cache);
}

/** Backward of spatialBatchnormForward (compact form); dout has x's shape and layout. */
export function spatialBatchnormBackward<A extends FloatArray>(dout: A, cache: BatchnormCache<A>): BackwardResult<A> {
  return backwardWithForm(COMPACT_FORM, "spatialBatchnormBackward", dout, cache);
}
