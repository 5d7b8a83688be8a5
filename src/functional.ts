// The CS231n-style functional API: batchnormForward / batchnormBackward(Alt).
// Each call copies its inputs into the engine's memory, runs one kernel and copies the
// results out into new arrays that belong to the caller; the block it used is freed, so a
// training loop reuses the same memory every step. (For a loop that copies nothing, see
// BatchNorm.workspace in layer.ts.)
import { type Dtype, type FloatArray, copyOf, dtypeOf } from "./dtype.js";
import { layout } from "./memory.js";
import * as check from "./validate.js";
import { COMPACT_FORM, GRAPH_FORM, engine } from "./wasm.js";

export interface BNParam<A extends FloatArray = FloatArray> {
  mode: "train" | "test";
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** running = momentum·running + (1 − momentum)·batch; default 0.9. */
  momentum?: number;
  /** Created as zeros by the first train call when absent; updated in place in train mode. */
  runningMean?: A;
  runningVar?: A;
}

export const DEFAULT_EPS = 1e-5;
export const DEFAULT_MOMENTUM = 0.9;

/** What a train-mode forward keeps for the backward pass. Holds copies: nothing the caller changes later affects it. */
export class BatchnormCache<A extends FloatArray = FloatArray> {
  /** @internal */
  constructor(
    readonly dtype: Dtype,
    readonly n: number,
    readonly d: number,
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
  /** null in test mode, which has no backward here. */
  cache: BatchnormCache<A> | null;
}

export interface BackwardResult<A extends FloatArray = FloatArray> {
  dx: A;
  dgamma: A;
  dbeta: A;
}

export function batchnormForward<A extends FloatArray>(x: A, gamma: A, beta: A, bnParam: BNParam<A>): ForwardResult<A> {
  return forward(x, gamma, beta, bnParam as BNParam) as ForwardResult<A>;
}

function forward(x: FloatArray, gamma: FloatArray, beta: FloatArray, bnParam: BNParam): ForwardResult {
  check.floatArray("x", x);
  const dtype = dtypeOf(x);
  const g = check.floatArray("gamma", gamma, dtype);
  const d = g.length;
  const n = check.rowsOf(x, d);
  check.floatArrayOfLength("beta", beta, dtype, d, "D = gamma.length");
  if (bnParam === null || typeof bnParam !== "object") {
    throw new TypeError(`bnParam must be an object like { mode: 'train' }, got ${bnParam === null ? "null" : typeof bnParam}`);
  }
  const mode = check.mode(bnParam.mode);
  const eps = check.eps(bnParam.eps ?? DEFAULT_EPS);
  const momentum = check.momentum(bnParam.momentum ?? DEFAULT_MOMENTUM);
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

  const { heap, kernels } = engine();
  const nd = n * d;
  const plan = layout({
    x: [dtype, nd], out: [dtype, nd], gamma: [dtype, d], beta: [dtype, d], runMean: [dtype, d], runVar: [dtype, d],
    mean: [dtype, d], meanLo: [dtype, d], variance: [dtype, d], invStd: [dtype, d], work: ["float64", Math.ceil(kernels.workBytes(dtype, d) / 8)],
  });
  const base = heap.alloc(plan.bytes);
  try {
    const p = (key: keyof typeof plan.offsets) => base + plan.offsets[key];
    const view = (key: keyof typeof plan.offsets, length = d) => heap.view(dtype, p(key), length);
    view("x", nd).set(x);
    view("gamma").set(g);
    view("beta").set(beta);
    if (runMean) view("runMean").set(runMean);
    else view("runMean").fill(0);
    if (runVar) view("runVar").set(runVar);
    else view("runVar").fill(0);

    if (mode === "test") {
      kernels.forwardTest(dtype, p("x"), n, d, p("gamma"), p("beta"), eps, p("runMean"), p("runVar"), p("out"), p("work"));
      return { out: copyOf(view("out", nd)), cache: null };
    }
    kernels.forwardTrain(
      dtype, p("x"), n, d, p("gamma"), p("beta"), eps, momentum, p("runMean"), p("runVar"), p("out"),
      p("mean"), p("meanLo"), p("variance"), p("invStd"), p("work"),
    );
    // Write back only once the kernel has run: an error above leaves bnParam untouched.
    const newMean = view("runMean");
    const newVar = view("runVar");
    if (runMean) runMean.set(newMean);
    else bnParam.runningMean = copyOf(newMean);
    if (runVar) runVar.set(newVar);
    else bnParam.runningVar = copyOf(newVar);
    const cache = new BatchnormCache(
      dtype, n, d, eps, copyOf(x), copyOf(g),
      copyOf(view("mean")), copyOf(view("meanLo")), copyOf(view("variance")), copyOf(view("invStd")),
    );
    return { out: copyOf(view("out", nd)), cache };
  } finally {
    heap.free(base);
  }
}

function backwardWithForm<A extends FloatArray>(form: number, name: string, dout: A, cache: BatchnormCache<A>): BackwardResult<A> {
  if (!(cache instanceof BatchnormCache)) {
    throw new TypeError(`${name}: cache must be the cache returned by a train-mode batchnormForward, got ${cache === null ? "null" : typeof cache}`);
  }
  const { dtype, n, d } = cache;
  check.floatArray("dout", dout, dtype);
  if (dout.length !== n * d) {
    throw new RangeError(`dout must have length ${n * d} (N = ${n} by D = ${d}, the shape of the cached forward), got length ${dout.length}`);
  }
  const { heap, kernels } = engine();
  const nd = n * d;
  const plan = layout({
    dout: [dtype, nd], x: [dtype, nd], dx: [dtype, nd], gamma: [dtype, d], mean: [dtype, d], meanLo: [dtype, d],
    invStd: [dtype, d], dgamma: [dtype, d], dbeta: [dtype, d], work: ["float64", Math.ceil(kernels.workBytes(dtype, d) / 8)],
  });
  const base = heap.alloc(plan.bytes);
  try {
    const p = (key: keyof typeof plan.offsets) => base + plan.offsets[key];
    const view = (key: keyof typeof plan.offsets, length = d) => heap.view(dtype, p(key), length);
    view("dout", nd).set(dout);
    view("x", nd).set(cache.x);
    view("gamma").set(cache.gamma);
    view("mean").set(cache.mean);
    view("meanLo").set(cache.meanLo);
    view("invStd").set(cache.invStd);
    kernels.backward(
      dtype, form, p("dout"), p("x"), n, d, p("gamma"), p("mean"), p("meanLo"), p("invStd"),
      p("dx"), p("dgamma"), p("dbeta"), p("work"),
    );
    return { dx: copyOf(view("dx", nd)), dgamma: copyOf(view("dgamma")), dbeta: copyOf(view("dbeta")) } as BackwardResult<A>;
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
