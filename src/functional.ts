// The CS231n-style functional API: batchnormForward / batchnormBackward(Alt) for (N, D)
// data and spatialBatchnormForward / spatialBatchnormBackward for (N, C, H, W) or (N, C, L).
// Each call copies its inputs into the engine's memory, runs one kernel and copies the
// results out into new arrays that belong to the caller; the block it used is freed, so a
// training loop reuses the same memory every step. Test mode goes through large batches in
// parts (see partRows). (For a loop that copies nothing, see BatchNorm.workspace in layer.ts.)
import { type Dtype, type FloatArray, bytesPerElement, copyInto, copyOf, dtypeOf, unfilled } from "./dtype.js";
import { type RunningStatsOptions, runningStatsRule, stepFactors } from "./conventions.js";
import { layout } from "./memory.js";
import { type Geometry, type Layout, checkLayout, geometry } from "./shape.js";
import * as check from "./validate.js";
import { COMPACT_FORM, GRAPH_FORM, engine } from "./wasm.js";

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

/** The per-column values a train-mode forward keeps, after x: STATS_ROWS rows of D values. */
const STATS = { gamma: 0, mean: 1, meanLo: 2, variance: 3, invStd: 4 } as const;
const STATS_ROWS = 5;

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
    return this.row(STATS.gamma);
  }
  get mean(): A {
    return this.row(STATS.mean);
  }
  /** mean + meanLo is the batch mean to twice the input's precision (see assembly/normalize.ts). */
  get meanLo(): A {
    return this.row(STATS.meanLo);
  }
  get variance(): A {
    return this.row(STATS.variance);
  }
  get invStd(): A {
    return this.row(STATS.invStd);
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
  const runMean = bnParam.runningMean === undefined && mode === "train"
    ? null
    : check.floatArrayOfLength("bnParam.runningMean", bnParam.runningMean, dtype, d, runningShape);
  const runVar = bnParam.runningVar === undefined && mode === "train"
    ? null
    : check.floatArrayOfLength("bnParam.runningVar", bnParam.runningVar, dtype, d, runningShape);
  const step = mode === "train" ? stepFactors(rule, tracked + 1, geo.count, geo.shape) : null;
  const countsBatches = rule.momentum === null || bnParam.numBatchesTracked !== undefined;
  if (step) {
    if (!runMean) check.settable("bnParam", bnParam, "runningMean");
    if (!runVar) check.settable("bnParam", bnParam, "runningVar");
    if (countsBatches) check.settable("bnParam", bnParam, "numBatchesTracked");
  }

  const { heap, kernels } = engine();
  const { n, S } = geo;
  const size = x.length;
  // Test mode treats rows independently: a large batch goes through in parts that stay in
  // cache, and the engine's memory never holds more than one part.
  const rowsAtOnce = step ? n : partRows(n, d, S, bytesPerElement(dtype));
  const plan = forwardPlan(dtype, d, rowsAtOnce * d * S);
  const at = plan.elements;
  const base = heap.scratch(plan.bytes);
  // Copies in and out go through the heap's view of the whole memory: no view per call.
  const block = heap.all(dtype);
  const o = base / block.BYTES_PER_ELEMENT;
  const ptr = (element: number) => base + element * block.BYTES_PER_ELEMENT;
  const stat = (k: number) => ptr(at.stats + k * d);
  block.set(g, o + at.stats + STATS.gamma * d);
  block.set(beta, o + at.beta);
  if (runMean) block.set(runMean, o + at.runMean);
  else block.fill(0, o + at.runMean, o + at.runMean + d);
  if (runVar) block.set(runVar, o + at.runVar);
  else block.fill(0, o + at.runVar, o + at.runVar + d);

  const gammaPtr = stat(STATS.gamma);
  if (!step) {
    const out = unfilled(x instanceof Float64Array, size);  // every part is copied in below
    const row = d * S;
    for (let r = 0; r < n; r += rowsAtOnce) {
      const rows = Math.min(rowsAtOnce, n - r);
      copyInto(block, o + at.x, x, r * row, rows * row);
      kernels.forwardTest(
        dtype, ptr(at.x), rows, d, S, gammaPtr, ptr(at.beta), eps, ptr(at.runMean), ptr(at.runVar), ptr(at.out), 0, ptr(at.work), r > 0,
      );
      copyInto(out, r * row, block, o + at.out, rows * row);
    }
    return { out, cache: null };
  }
  block.set(x, o + at.x);
  kernels.forwardTrain(
    dtype, ptr(at.x), n, d, S, gammaPtr, ptr(at.beta), eps, step.momentum, step.runVarScale, ptr(at.runMean), ptr(at.runVar), ptr(at.out),
    stat(STATS.mean), stat(STATS.meanLo), stat(STATS.variance), stat(STATS.invStd), ptr(at.work),
  );
  // Write back only once the kernel has run: an error above leaves bnParam untouched.
  if (runMean) copyInto(runMean, 0, block, o + at.runMean, d);
  else bnParam.runningMean = copyOf(block, o + at.runMean, d);
  if (runVar) copyInto(runVar, 0, block, o + at.runVar, d);
  else bnParam.runningVar = copyOf(block, o + at.runVar, d);
  if (countsBatches) bnParam.numBatchesTracked = tracked + 1;
  const saved = unfilled(x instanceof Float64Array, size + STATS_ROWS * d);
  saved.set(x);
  copyInto(saved, size, block, o + at.stats, STATS_ROWS * d);
  return { out: copyOf(block, o + at.out, size), cache: new BatchnormCache(dtype, geo, eps, saved) };
}

/** Bytes of x in one part of a batch normalized in parts: with its output, within L2. */
const PART_BYTES = 256 << 10;

/**
 * Rows per part (items, for channels-first data, S > 1). Rows come in multiples of 16, so
 * that each part starts on a whole group of the SIMD kernels (a group spans at most 16 rows).
 */
function partRows(n: number, d: number, S: number, elementBytes: number): number {
  const fit = Math.floor(PART_BYTES / (d * S * elementBytes));
  return Math.min(n, S > 1 ? Math.max(1, fit) : Math.max(16, fit - (fit % 16)));
}

/** A call's memory block: where each array starts, in elements of its dtype, and the block's size. */
interface Plan<K extends string> {
  elements: Record<K, number>;
  bytes: number;
}

/** The layout of a call's block, in elements; the last one is remembered (training loops repeat a shape). */
function planOf<K extends string>(parts: Record<K, [Dtype, number]>, dtype: Dtype): Plan<K> {
  const { offsets, bytes } = layout(parts);
  const size = bytesPerElement(dtype);
  const elements = {} as Record<K, number>;
  for (const key of Object.keys(offsets) as K[]) elements[key] = offsets[key] / size;
  return { elements, bytes };
}

/** A function making a call's plan for (dtype, d, size) that remembers its last plan (training loops repeat a shape). */
function planMaker<K extends string>(parts: (dtype: Dtype, d: number, size: number, workValues: number) => Record<K, [Dtype, number]>) {
  let last: { engine: object; dtype: Dtype; d: number; size: number; plan: Plan<K> } | null = null;
  return (dtype: Dtype, d: number, size: number): Plan<K> => {
    const current = engine();
    if (last && last.engine === current && last.dtype === dtype && last.d === d && last.size === size) return last.plan;
    const workValues = Math.ceil(current.kernels.workBytes(dtype, d) / 8);
    const plan = planOf(parts(dtype, d, size, workValues), dtype);
    last = { engine: current, dtype, d, size, plan };
    return plan;
  };
}

const forwardPlan = planMaker((dtype, d, size, workValues) => ({
  x: [dtype, size], out: [dtype, size], beta: [dtype, d], runMean: [dtype, d], runVar: [dtype, d],
  stats: [dtype, STATS_ROWS * d], work: ["float64", workValues],
}));

const backwardPlan = planMaker((dtype, d, size, workValues) => ({
  dout: [dtype, size], saved: [dtype, size + STATS_ROWS * d], dx: [dtype, size], dgamma: [dtype, d], dbeta: [dtype, d],
  work: ["float64", workValues],
}));

function backwardWithForm<A extends FloatArray>(form: number, name: string, dout: A, cache: BatchnormCache<A>): BackwardResult<A> {
  if (!(cache instanceof BatchnormCache)) {
    throw new TypeError(`${name}: cache must be the cache returned by a train-mode forward, got ${cache === null ? "null" : typeof cache}`);
  }
  const { dtype, geometry: geo } = cache;
  const { n, d, S, shape } = geo;
  check.floatArray("dout", dout, dtype);
  const size = cache.saved.length - STATS_ROWS * d;
  if (dout.length !== size) {
    const described = shape.length === 2 ? `N = ${shape[0]} by D = ${shape[1]}` : `[${shape.join(", ")}]`;
    throw new RangeError(`dout must have length ${size} (${described}, the shape of the cached forward), got length ${dout.length}`);
  }
  const { heap, kernels } = engine();
  const plan = backwardPlan(dtype, d, size);
  const at = plan.elements;
  const base = heap.scratch(plan.bytes);
  const block = heap.all(dtype);
  const o = base / block.BYTES_PER_ELEMENT;
  const ptr = (element: number) => base + element * block.BYTES_PER_ELEMENT;
  const stat = (k: number) => ptr(at.saved + size + k * d);
  block.set(dout, o + at.dout);
  block.set(cache.saved, o + at.saved);
  kernels.backward(
    dtype, form, ptr(at.dout), ptr(at.saved), n, d, S, stat(STATS.gamma), stat(STATS.mean), stat(STATS.meanLo), stat(STATS.invStd),
    ptr(at.dx), ptr(at.dgamma), ptr(at.dbeta), ptr(at.work),
  );
  return {
    dx: copyOf(block, o + at.dx, size), dgamma: copyOf(block, o + at.dgamma, d), dbeta: copyOf(block, o + at.dbeta, d),
  } as BackwardResult<A>;
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
