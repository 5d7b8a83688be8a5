// The CS231n-style functional API: batchnormForward / batchnormBackward(Alt) for (N, D)
// data and spatialBatchnormForward / spatialBatchnormBackward for (N, C, H, W) or (N, C, L).
// Each call copies its inputs into the engine's memory, runs one kernel and copies the
// results out into new arrays that belong to the caller; the block it used is freed, so a
// training loop reuses the same memory every step. (For a loop that copies nothing, see
// BatchNorm.workspace in layer.ts.)
import { type Dtype, type FloatArray, copyOf, dtypeOf } from "./dtype.js";
import { type RunningStatsOptions, runningStatsRule, stepFactors } from "./conventions.js";
import { cachedLayout } from "./memory.js";
import { type Geometry, type Layout, checkLayout, geometry } from "./shape.js";
import * as check from "./validate.js";
import { COMPACT_FORM, GRAPH_FORM, engine } from "./wasm.js";

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

export const DEFAULT_EPS = 1e-5;
export const DEFAULT_MOMENTUM = 0.9;

/** What a train-mode forward keeps for the backward pass. Holds copies: nothing the caller changes later affects it. */
export class BatchnormCache<A extends FloatArray = FloatArray> {
  /** @internal */
  constructor(
    readonly dtype: Dtype,
    /** The data's shape as the kernels see it (see shape.ts), and the caller's shape. */
    readonly geometry: Geometry,
    readonly eps: number,
    /** The input, copied. */
    readonly x: A,
    /** gamma at the time of the forward, copied. */
    readonly gamma: A,
    readonly mean: A,
    /** mean + meanLo is the batch mean to twice the input's precision (see assembly/normalize.ts). */
    readonly meanLo: A,
    readonly variance: A,
    readonly invStd: A,
  ) {}
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
  check.floatArray("x", x);
  const dtype = dtypeOf(x);
  const g = check.floatArray("gamma", gamma, dtype);
  const d = g.length;
  const geo = geometry(x.length, d, shape, dataLayout);
  check.floatArrayOfLength("beta", beta, dtype, d, "D = gamma.length");
  if (bnParam === null || typeof bnParam !== "object") {
    throw new TypeError(`bnParam must be an object like { mode: 'train' }, got ${bnParam === null ? "null" : typeof bnParam}`);
  }
  const mode = check.mode(bnParam.mode);
  const eps = check.eps(bnParam.eps ?? DEFAULT_EPS);
  const rule = runningStatsRule(bnParam, "bnParam.", DEFAULT_MOMENTUM);
  const tracked = bnParam.numBatchesTracked ?? 0;
  if (!Number.isInteger(tracked) || tracked < 0) {
    throw new RangeError(`bnParam.numBatchesTracked must be a whole number ≥ 0, got ${String(bnParam.numBatchesTracked)}`);
  }
  const runningShape = "D = gamma.length";
  if (mode === "test" && (bnParam.runningMean === undefined || bnParam.runningVar === undefined)) {
    throw new TypeError("bnParam.runningMean and bnParam.runningVar are required in test mode (a train call creates them)");
  }
  const runMean = bnParam.runningMean === undefined && mode === "train"
    ? null
    : check.floatArrayOfLength("bnParam.runningMean", bnParam.runningMean, dtype, d, runningShape);
  const runVar = bnParam.runningVar === undefined && mode === "train"
    ? null
    : check.floatArrayOfLength("bnParam.runningVar", bnParam.runningVar, dtype, d, runningShape);
  const step = mode === "train" ? stepFactors(rule, tracked + 1, geo.count, geo.shape) : null;

  const { backend, heap, kernels } = engine();
  const { n, S } = geo;
  const size = x.length;
  const plan = cachedLayout(`forward ${backend} ${dtype} ${d} ${size}`, () => ({
    x: [dtype, size], out: [dtype, size], gamma: [dtype, d], beta: [dtype, d], runMean: [dtype, d], runVar: [dtype, d],
    mean: [dtype, d], meanLo: [dtype, d], variance: [dtype, d], invStd: [dtype, d], work: ["float64", Math.ceil(kernels.workBytes(dtype, d) / 8)],
  }));
  const base = heap.alloc(plan.bytes);
  try {
    const p = (key: keyof typeof plan.offsets) => base + plan.offsets[key];
    const view = (key: keyof typeof plan.offsets, length = d) => heap.view(dtype, p(key), length);
    view("x", size).set(x);
    view("gamma").set(g);
    view("beta").set(beta);
    if (runMean) view("runMean").set(runMean);
    else view("runMean").fill(0);
    if (runVar) view("runVar").set(runVar);
    else view("runVar").fill(0);

    if (!step) {
      kernels.forwardTest(dtype, p("x"), n, d, S, p("gamma"), p("beta"), eps, p("runMean"), p("runVar"), p("out"), 0, p("work"));
      return { out: copyOf(view("out", size)), cache: null };
    }
    kernels.forwardTrain(
      dtype, p("x"), n, d, S, p("gamma"), p("beta"), eps, step.momentum, step.runVarScale, p("runMean"), p("runVar"), p("out"),
      p("mean"), p("meanLo"), p("variance"), p("invStd"), p("work"),
    );
    // Write back only once the kernel has run: an error above leaves bnParam untouched.
    const newMean = view("runMean");
    const newVar = view("runVar");
    if (runMean) runMean.set(newMean);
    else bnParam.runningMean = copyOf(newMean);
    if (runVar) runVar.set(newVar);
    else bnParam.runningVar = copyOf(newVar);
    if (rule.momentum === null || bnParam.numBatchesTracked !== undefined) bnParam.numBatchesTracked = tracked + 1;
    const cache = new BatchnormCache(
      dtype, geo, eps, copyOf(x), copyOf(g),
      copyOf(view("mean")), copyOf(view("meanLo")), copyOf(view("variance")), copyOf(view("invStd")),
    );
    return { out: copyOf(view("out", size)), cache };
  } finally {
    heap.free(base);
  }
}

function backwardWithForm<A extends FloatArray>(form: number, name: string, dout: A, cache: BatchnormCache<A>): BackwardResult<A> {
  if (!(cache instanceof BatchnormCache)) {
    throw new TypeError(`${name}: cache must be the cache returned by a train-mode forward, got ${cache === null ? "null" : typeof cache}`);
  }
  const { dtype, geometry: geo } = cache;
  const { n, d, S, shape } = geo;
  check.floatArray("dout", dout, dtype);
  const size = cache.x.length;
  if (dout.length !== size) {
    const described = shape.length === 2 ? `N = ${shape[0]} by D = ${shape[1]}` : `[${shape.join(", ")}]`;
    throw new RangeError(`dout must have length ${size} (${described}, the shape of the cached forward), got length ${dout.length}`);
  }
  const { backend, heap, kernels } = engine();
  const plan = cachedLayout(`backward ${backend} ${dtype} ${d} ${size}`, () => ({
    dout: [dtype, size], x: [dtype, size], dx: [dtype, size], gamma: [dtype, d], mean: [dtype, d], meanLo: [dtype, d],
    invStd: [dtype, d], dgamma: [dtype, d], dbeta: [dtype, d], work: ["float64", Math.ceil(kernels.workBytes(dtype, d) / 8)],
  }));
  const base = heap.alloc(plan.bytes);
  try {
    const p = (key: keyof typeof plan.offsets) => base + plan.offsets[key];
    const view = (key: keyof typeof plan.offsets, length = d) => heap.view(dtype, p(key), length);
    view("dout", size).set(dout);
    view("x", size).set(cache.x);
    view("gamma").set(cache.gamma);
    view("mean").set(cache.mean);
    view("meanLo").set(cache.meanLo);
    view("invStd").set(cache.invStd);
    kernels.backward(
      dtype, form, p("dout"), p("x"), n, d, S, p("gamma"), p("mean"), p("meanLo"), p("invStd"),
      p("dx"), p("dgamma"), p("dbeta"), p("work"),
    );
    return { dx: copyOf(view("dx", size)), dgamma: copyOf(view("dgamma")), dbeta: copyOf(view("dbeta")) } as BackwardResult<A>;
  } finally {
    heap.free(base);
  }
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
