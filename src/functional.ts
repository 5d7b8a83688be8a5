// The CS231n-style functional API: batchnormForward / batchnormBackward(Alt) for (N, D)
// data and spatialBatchnormForward / spatialBatchnormBackward for (N, C, H, W) or (N, C, L).
// Each call validates, then runs one step (step.ts): its inputs are copied into scratch memory,
// the kernels run, and the results are copied out into new arrays that belong to the caller,
// or into the caller's own (outputs given), so a training loop reuses the same memory every step. (For a loop that copies nothing, see
// the workspace, workspace.ts.)
import { type Dtype, type FloatArray, arrayType, copyOf, dtypeOf, unfilled } from "./dtype.js";
import { type RunningStatsOptions, runningStatsRule, stepFactors } from "./conventions.js";
import { rememberedPlan } from "./block.js";
import { type Activation, BACKWARD_RELU_STEP, BACKWARD_STEP, type BackwardForm, CHECKSUM_WORDS, COMPACT_FORM, GRAPH_FORM, TEST_STEP, TRAIN_STEP } from "./kernels.js";
import { type Geometry, type Layout, checkLayout, geometry } from "./shape.js";
import { SAVED, runBackward, runForward, savedRows } from "./step.js";
import * as check from "./validate.js";
import { engine } from "./wasm.js";

/** The state object of the functional API, as CS231n's bn_param; any key not declared here is refused. */
export interface BNParam<A extends FloatArray = FloatArray> extends RunningStatsOptions {
  /** 'train' or 'test' (a string: `{ mode: "train" }` in a variable need not be `as const`). */
  mode: "train" | "test" | (string & {});
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** Created as zeros by the first train call when absent (CS231n); updated in place in train mode. */
  runningMean?: A;
  /** As runningMean: created as zeros by the first train call when absent (CS231n); updated in place in train mode. */
  runningVar?: A;
  /** Train calls so far; kept here when momentum is null (the cumulative average). */
  numBatchesTracked?: number;
  /**
   * 'relu': out = max(0, BN(x)) in one pass, and the backward masks dout by out > 0 in its
   * own sweeps (see docs/fusion.md); default 'none'.
   */
  activation?: Activation;
}

/** Every key of BNParam: any other is refused (see check.knownKeys). */
const BN_PARAM_KEYS = [
  "mode", "eps", "momentum", "momentumConvention", "runningVariance", "runningMean", "runningVar", "numBatchesTracked", "activation",
] as const satisfies readonly (keyof BNParam)[];

export const DEFAULT_EPS = 1e-5;
export const DEFAULT_MOMENTUM = 0.9;

const row = (name: (typeof SAVED)[number]) => SAVED.indexOf(name);

/**
 * What a train-mode forward keeps for the backward pass: a reference to x (not a copy, as
 * CS231n's cache and PyTorch's autograd keep it), a checksum of x, and copies of gamma and
 * the batch statistics. A backward refuses an x changed since the forward
 * (ChangedInputError), never returning a wrong gradient. An x that is a view of the
 * engine's memory (a workspace's) is copied: that memory is reused.
 */
export class BatchnormCache<A extends FloatArray = FloatArray> {
  /** @internal */
  constructor(
    /** The forward's dtype. */
    readonly dtype: Dtype,
    /** The data's shape as the kernels see it (see shape.ts), and the caller's shape. */
    readonly geometry: Geometry,
    /** The forward's eps. */
    readonly eps: number,
    /** The forward's input. */
    readonly x: A,
    /** @internal gamma, mean, meanLo, variance, invStd (and beta, with relu): savedRows() rows of D values. */
    readonly saved: A,
    /** @internal The checksum of x at the time of the forward. */
    readonly checksum: Uint32Array,
    /** The activation fused into the forward; its backward goes through it too. */
    readonly activation: Activation = "none",
  ) {}

  private row(k: number): A {
    const d = this.geometry.d;
    return this.saved.subarray(k * d, (k + 1) * d) as A;
  }
  /** gamma at the time of the forward, copied. */
  get gamma(): A {
    return this.row(row("gamma"));
  }
  /** The batch mean the forward normalized with, one value per feature. */
  get mean(): A {
    return this.row(row("mean"));
  }
  /** mean + meanLo is the batch mean to twice the input's precision (see assembly/normalize.ts). */
  get meanLo(): A {
    return this.row(row("meanLo"));
  }
  /** The biased batch variance, one value per feature. */
  get variance(): A {
    return this.row(row("variance"));
  }
  /** 1/sqrt(variance + eps), one value per feature. */
  get invStd(): A {
    return this.row(row("invStd"));
  }
}

/** The result of a forward: the output and, in train mode, the cache for the backward. */
export interface ForwardResult<A extends FloatArray = FloatArray> {
  /** The normalized, scaled and shifted output: a new array, or the outputs' `out`. */
  out: A;
  /** null in test mode. */
  cache: BatchnormCache<A> | null;
}

/** The result of a train-mode forward. */
export interface TrainResult<A extends FloatArray = FloatArray> extends ForwardResult<A> {
  cache: BatchnormCache<A>;
}

/** The gradients of a backward. */
export interface BackwardResult<A extends FloatArray = FloatArray> {
  /** The gradient with respect to x, of its shape. */
  dx: A;
  /** The gradient with respect to gamma, one value per feature. */
  dgamma: A;
  /** The gradient with respect to beta, one value per feature. */
  dbeta: A;
}

/** Arrays a forward writes into instead of a new one (returned as they are). */
export interface ForwardOutputs<A extends FloatArray = FloatArray> {
  /** Where the output goes: the length of x (in test mode it may be x itself). */
  out?: A;
}

/** The options of the row functions: outputs given, and the shape of x stated to be checked. */
export interface RowForwardOptions<A extends FloatArray = FloatArray> extends ForwardOutputs<A> {
  /** x's shape [N, D]: when given, D must be gamma.length and N·D x.length (else a RangeError). */
  shape?: readonly number[];
}

/** Arrays a backward writes into, each instead of a new one (returned as they are). */
export interface BackwardOutputs<A extends FloatArray = FloatArray> {
  /** Where dx goes: the length of dout (it may be dout itself). */
  dx?: A;
  /** Where dgamma goes: one value per feature. */
  dgamma?: A;
  /** Where dbeta goes: one value per feature. */
  dbeta?: A;
}

/**
 * Batch normalization of row-major (N, D) x, D = gamma.length, as in CS231n; `options.out` is
 * written into when given, and `options.shape` ([N, D]) is checked against x and gamma.
 */
export function batchnormForward<A extends FloatArray>(x: A, gamma: A, beta: A, bnParam: BNParam<A> & { mode: "train" }, options?: RowForwardOptions<A>): TrainResult<A>;
export function batchnormForward<A extends FloatArray>(x: A, gamma: A, beta: A, bnParam: BNParam<A>, options?: RowForwardOptions<A>): ForwardResult<A>;
export function batchnormForward<A extends FloatArray>(x: A, gamma: A, beta: A, bnParam: BNParam<A>, options?: RowForwardOptions<A>): ForwardResult<A> {
  const given = outputsOf("forward options", options, ["out", "shape"]) as { out?: FloatArray; shape?: unknown };
  const shape = given.shape;
  if (shape !== undefined && (!Array.isArray(shape) || shape.length !== 2)) {
    throw new RangeError(`options.shape must be [N, D], got ${check.shown(shape)}`);
  }
  return forward(x, gamma, beta, bnParam as BNParam, shape as number[] | undefined, "NCHW", given.out) as ForwardResult<A>;
}

/**
 * Spatial batch normalization: statistics per channel over N and the spatial positions.
 * shape is [N, C, H, W] or [N, C, L], always in that order; layout says how x is stored:
 * 'NCHW' / 'NCL' (channels first, default) or 'NHWC' / 'NLC' (channels last).
 */
export function spatialBatchnormForward<A extends FloatArray>(
  x: A, gamma: A, beta: A, bnParam: BNParam<A> & { mode: "train" }, shape: readonly number[], dataLayout?: Layout, outputs?: ForwardOutputs<A>,
): TrainResult<A>;
export function spatialBatchnormForward<A extends FloatArray>(
  x: A, gamma: A, beta: A, bnParam: BNParam<A>, shape: readonly number[], dataLayout?: Layout, outputs?: ForwardOutputs<A>,
): ForwardResult<A>;
export function spatialBatchnormForward<A extends FloatArray>(
  x: A, gamma: A, beta: A, bnParam: BNParam<A>, shape: readonly number[], dataLayout: Layout = "NCHW", outputs?: ForwardOutputs<A>,
): ForwardResult<A> {
  if (!Array.isArray(shape)) throw new RangeError(`shape must be [N, C, H, W] or [N, C, L], got ${JSON.stringify(shape)}`);
  return forward(x, gamma, beta, bnParam as BNParam, shape, checkLayout(dataLayout), outputsOf("forward outputs", outputs, ["out"]).out) as ForwardResult<A>;
}

function forward(
  x: FloatArray, gamma: FloatArray, beta: FloatArray, bnParam: BNParam, shape: readonly number[] | undefined, dataLayout: Layout,
  givenOut: FloatArray | undefined,
): ForwardResult {
  // 1. Validate everything before anything is reserved, copied or written.
  check.floatArray("x", x);
  const dtype = dtypeOf(x);
  const d = check.floatArray("gamma", gamma, dtype).length;
  check.floatArray("beta", beta, dtype);
  if (beta.length !== d) {
    throw new RangeError(`gamma and beta must have one value per feature, D each: gamma has length ${d}, beta ${beta.length}`);
  }
  const geo = geometry(x.length, d, shape, dataLayout);
  if (bnParam === null || typeof bnParam !== "object") {
    throw new TypeError(`bnParam must be an object like { mode: 'train' }, got ${bnParam === null ? "null" : typeof bnParam}`);
  }
  check.knownKeys("bnParam", bnParam, BN_PARAM_KEYS);
  const mode = check.mode(bnParam.mode);
  const activation = check.activation(bnParam.activation);
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

  // In test mode out may be x itself (rows are read before they are written); in train mode
  // the cache refers to x, which must stay as it is.
  const inputs = { x, gamma, beta, "bnParam.runningMean": runMean, "bnParam.runningVar": runVar };
  const out = givenOut
    ? check.output("outputs.out", givenOut, dtype, x.length, inputs, train ? [] : ["x"])
    : unfilled(f64Of(dtype), x.length);
  const e = engine();
  if (!train) {
    const plan = activation === "relu" ? testReluPlan : testPlan;
    runForward(e, {
      dtype, shape: geo, statistics: "running", factors: { eps, momentum: 1, runVarScale: 1 }, update: false,
      params: { gamma, beta, runMean, runVar }, activation,
    }, { x, out, saved: null, checksum: null }, (rows) => plan(e, dtype, { n: rows, d, S: geo.S }), null);
    return { out, cache: null };
  }
  // A train step moves the running statistics in place: new ones start as zeros (CS231n).
  const newMean = runMean ? null : new (arrayType(dtype))(d);
  const newVar = runVar ? null : new (arrayType(dtype))(d);
  const saved = new (arrayType(dtype))(savedRows(activation) * d);
  const checksum = new Uint32Array(CHECKSUM_WORDS);
  const inEngine = e.heap.owns(x);
  const input = e.heap.pin(x);
  runForward(e, {
    dtype, shape: geo, statistics: "batch", factors: { eps, ...step! }, update: true,
    params: { gamma, beta, runMean: runMean ?? newMean, runVar: runVar ?? newVar }, activation,
  }, { x, out, saved, checksum }, () => trainPlan(e, dtype, geo), null);
  // 6. State back only once the step has run.
  if (newMean) bnParam.runningMean = newMean;
  if (newVar) bnParam.runningVar = newVar;
  if (countsBatches) bnParam.numBatchesTracked = tracked + 1;
  // The engine reuses its memory: a view of it is copied, any other x referred to.
  const kept = inEngine ? copyOf(input()) : x;
  return { out, cache: new BatchnormCache(dtype, geo, eps, kept, saved, checksum, activation) };
}

const f64Of = (dtype: Dtype) => dtype === "float64";

/** The outputs object of a call, checked: an object with only `keys`. */
function outputsOf<K extends string>(name: string, value: unknown, keys: readonly K[]): Partial<Record<K, FloatArray>> {
  if (value === undefined) return {};
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value)) {
    throw new TypeError(`${name} must be an object like { ${keys.join(", ")} }, got ${check.shown(value)}`);
  }
  check.knownKeys(name, value, keys);
  return value as Partial<Record<K, FloatArray>>;
}

const trainPlan = rememberedPlan(["x", "out", "gamma", "beta", "runMean", "runVar", "mean", "meanLo", "variance", "invStd", "checksum"], [TRAIN_STEP]);
const testPlan = rememberedPlan(["x", "out", "gamma", "beta", "runMean", "runVar"], [TEST_STEP]);
const backwardPlan = rememberedPlan(["dout", "x", "dx", "gamma", "mean", "meanLo", "invStd", "dgamma", "dbeta", "checksum"], [BACKWARD_STEP]);
// The fused ReLU's: invStd in test mode too, beta in the backward (the mask's map, see step.ts).
const testReluPlan = rememberedPlan(["x", "out", "gamma", "beta", "runMean", "runVar", "invStd"], [TEST_STEP]);
const backwardReluPlan = rememberedPlan(["dout", "x", "dx", "gamma", "beta", "mean", "meanLo", "invStd", "dgamma", "dbeta", "checksum"], [BACKWARD_RELU_STEP]);

function backwardWithForm<A extends FloatArray>(
  form: BackwardForm, name: string, dout: A, cache: BatchnormCache<A> | null, outputs: BackwardOutputs<A> | undefined,
): BackwardResult<A> {
  if (!(cache instanceof BatchnormCache)) {
    const got = cache === null ? "null (a test-mode forward keeps no cache)" : typeof cache;
    throw new TypeError(`${name}: cache must be the cache returned by a train-mode forward, got ${got}`);
  }
  const { dtype, geometry: geo, x } = cache;
  const { d, shape } = geo;
  check.floatArray("dout", dout, dtype);
  const size = x.length;
  if (dout.length !== size) {
    const described = shape.length === 2 ? `N = ${shape[0]} by D = ${shape[1]}` : `[${shape.join(", ")}]`;
    throw new RangeError(`dout must have length ${size} (${described}, the shape of the cached forward), got length ${dout.length}`);
  }
  check.floatArray("cache.x", x, dtype);
  const given = outputsOf(`${name} outputs`, outputs, ["dx", "dgamma", "dbeta"]);
  // Every input is copied in before any output is written: an output may alias dout.
  const result = {
    dx: given.dx ? check.output("outputs.dx", given.dx, dtype, size, {}, []) : unfilled(f64Of(dtype), size),
    dgamma: given.dgamma ? check.output("outputs.dgamma", given.dgamma, dtype, d, { "outputs.dx": given.dx }, []) : unfilled(f64Of(dtype), d),
    dbeta: given.dbeta ? check.output("outputs.dbeta", given.dbeta, dtype, d, { "outputs.dx": given.dx, "outputs.dgamma": given.dgamma }, []) : unfilled(f64Of(dtype), d),
  };
  const { activation } = cache;
  runBackward(engine(), { dtype, shape: geo, form, activation }, {
    dout, x, saved: cache.saved, hasGamma: true, ...result, checksum: cache.checksum,
  }, (activation === "relu" ? backwardReluPlan : backwardPlan)(engine(), dtype, geo), null);
  return result as BackwardResult<A>;
}

/** Backward through the computational graph (x̂, dvar, dmean), as derived step by step in CS231n. */
export function batchnormBackward<A extends FloatArray>(dout: A, cache: BatchnormCache<A> | null, outputs?: BackwardOutputs<A>): BackwardResult<A> {
  return backwardWithForm(GRAPH_FORM, "batchnormBackward", dout, cache, outputs);
}

/** Backward in the compact form dx = (γ·invStd/N)·(N·dout − Σdout − x̂·Σ(dout·x̂)). */
export function batchnormBackwardAlt<A extends FloatArray>(dout: A, cache: BatchnormCache<A> | null, outputs?: BackwardOutputs<A>): BackwardResult<A> {
  return backwardWithForm(COMPACT_FORM, "batchnormBackwardAlt", dout, cache, outputs);
}

/** Backward of spatialBatchnormForward (compact form); dout has x's shape and layout. */
export function spatialBatchnormBackward<A extends FloatArray>(dout: A, cache: BatchnormCache<A> | null, outputs?: BackwardOutputs<A>): BackwardResult<A> {
  return backwardWithForm(COMPACT_FORM, "spatialBatchnormBackward", dout, cache, outputs);
}
