// The step runner: the one path from validated arrays to the kernels and back, used by the
// functional API, the layer and the workspace. Every step runs in this order:
//   1. validate (the caller, before it calls: nothing below throws on bad input);
//   2. reserve memory: the only place the engine's memory can grow;
//   3. derive views (after the growth, which detaches old ones; inputs that are views of the
//      engine's memory are re-derived, see Heap.pin);
//   4. copy inputs in;  5. run the kernels;  6. write results and state back.
import { type Dtype, type FloatArray, bytesPerElement, copyInto } from "./dtype.js";
import { type BlockPlan, pointersOf } from "./block.js";
import { type Activation, type BackwardForm, CHECKSUM_WORDS, type KernelShape, type Pointers, type StepFactors } from "./kernels.js";
import { PART_BYTES, PART_ROWS_MULTIPLE } from "./tuning.js";
import { type Engine } from "./wasm.js";

/** Where a step's block is: a workspace's own, or (null) the call's scratch, reserved by the step. */
export interface Placed {
  plan: BlockPlan;
  base: number;
}

/** The per-column inputs of a forward, validated: null is absent (gamma 1, beta 0). */
export interface ForwardParams {
  gamma: FloatArray | null;
  beta: FloatArray | null;
  /** Read by a test-mode step; updated in place by a train step that has `update`. */
  runMean: FloatArray | null;
  runVar: FloatArray | null;
}

export interface ForwardStep {
  dtype: Dtype;
  shape: KernelShape;
  /** "batch": normalize with the batch statistics; "running": with runMean, runVar. */
  statistics: "batch" | "running";
  factors: StepFactors;
  /** A batch step that moves the running statistics (params.runMean/runVar, in place). */
  update: boolean;
  params: ForwardParams;
  /** Fused into the step (default 'none'); 'relu' in test mode needs invStd in the block. */
  activation?: Activation;
}

/** Where the data comes from and goes: an array to copy, or null when it is in the block already. */
export interface ForwardIO {
  x: FloatArray | null;
  out: FloatArray | null;
  /** The step's gamma, mean, meanLo, variance, invStd (d each, in that order), for a cache; with 'relu', beta after them (savedRows). */
  saved: FloatArray | null;
  /** Filled with the checksum of x (CHECKSUM_WORDS u32), for a cache that refers to x. */
  checksum: Uint32Array | null;
}

/** Order of the per-column values a batch step saves (ForwardIO.saved). */
export const SAVED = ["gamma", "mean", "meanLo", "variance", "invStd"] as const;

/** Rows of d values a step saves: SAVED, and with 'relu' beta (its backward recomputes the mask). */
export function savedRows(activation: Activation | undefined): number {
  return SAVED.length + (activation === "relu" ? 1 : 0);
}

type Reserve = (plan: BlockPlan) => Placed;

/**
 * 2. The memory of a step (`placed` when the block is a workspace's, else scratch above every
 * live block), and 3. the arrays of the call as views on the memory after it: growth detaches
 * the views of the old buffer, so those are re-derived (Heap.pin), as are views of an older
 * buffer of a shared memory. Others come back as they are.
 */
function reserve<T extends (FloatArray | null)[]>(engine: Engine, plan: BlockPlan, placed: Placed | null, arrays: T): { block: Placed; arrays: T } {
  const { heap } = engine;
  const own = arrays.some((a) => a !== null && heap.owns(a));
  const pins = own ? arrays.map((a) => (a ? heap.pin(a) : null)) : null;
  const block = placed ?? { plan, base: heap.scratch(plan.bytes) };
  return { block, arrays: pins ? (pins.map((get) => (get ? get() : null)) as T) : arrays };
}

/** Runs one forward step; `plan` is used for scratch when `placed` is null. */
export function runForward(engine: Engine, step: ForwardStep, io: ForwardIO, plan: (rows: number) => BlockPlan, placed: Placed | null): void {
  const { heap, kernels } = engine;
  const { dtype, shape, params } = step;
  const { n, d, S } = shape;
  // Test mode treats rows independently: a large batch in scratch goes through in parts that
  // stay in cache, and the engine's memory never holds more than one part.
  const rows = placed || step.statistics === "batch" ? n : partRows(n, d, S, bytesPerElement(dtype));
  const { block, arrays } = reserve(engine, placed ? placed.plan : plan(rows), placed, [io.x, params.gamma, params.beta, params.runMean, params.runVar, io.out, io.saved]);
  const [x, gamma, beta, runMean, runVar, out, saved] = arrays;
  const all = heap.all(dtype);
  const p = pointersOf(block.plan, block.base);
  const size = bytesPerElement(dtype);
  const at = (ptr: number) => ptr / size;
  const sum = io.checksum ? (from: number, values: number) => kernels.checksum(p.x, (values * size) / 4, (from * size) / 4, p.checksum) : null;
  if (sum) new Uint32Array(heap.buffer, p.checksum, CHECKSUM_WORDS).fill(0);
  // 4. Copy in.
  if (!gamma) p.gamma = 0;
  else copyInto(all, at(p.gamma), gamma, 0, d);
  if (!beta) p.beta = 0;
  else copyInto(all, at(p.beta), beta, 0, d);
  if (runMean) copyInto(all, at(p.runMean), runMean, 0, d);
  if (runVar) copyInto(all, at(p.runVar), runVar, 0, d);
  const row = d * S;
  if (step.statistics === "running") {
    for (let r = 0; r < n; r += rows) {
      const part = Math.min(rows, n - r);
      if (x) copyInto(all, at(p.x), x, r * row, part * row);
      sum?.(r * row, part * row);
      kernels.forwardTest(dtype, { n: part, d, S }, p, step.factors.eps, r > 0, step.activation);
      if (out) copyInto(out, r * row, all, at(p.out), part * row);
    }
  } else {
    if (x) all.set(x, at(p.x));
    sum?.(0, n * row);
    const runMeanAt = p.runMean;
    const runVarAt = p.runVar;
    if (!step.update) p.runMean = p.runVar = 0;
    // 5. Run.
    kernels.forwardTrain(dtype, shape, p, step.factors, step.activation);
    // 6. Only once the kernels have run: an error above leaves every caller's array untouched.
    if (step.update) {
      copyInto(runMean!, 0, all, at(runMeanAt), d);
      copyInto(runVar!, 0, all, at(runVarAt), d);
    }
    if (out) copyInto(out, 0, all, at(p.out), n * row);
  }
  if (saved) saveColumns(saved, all, at, p, step);
  if (io.checksum) io.checksum.set(new Uint32Array(heap.buffer, p.checksum, CHECKSUM_WORDS));
}

/**
 * The saved per-column values, in SAVED's order, from the block; for a step with the running
 * statistics, those as mean and variance, meanLo 0 (the statistics of an eval-mode backward).
 */
function saveColumns(saved: FloatArray, all: FloatArray, at: (ptr: number) => number, p: Pointers, step: ForwardStep): void {
  const d = saved.length / savedRows(step.activation);
  const running = step.statistics === "running";
  SAVED.forEach((name, k) => {
    if (name === "gamma" && !p.gamma) saved.fill(1, 0, d);
    else if (running && name === "meanLo") saved.fill(0, k * d, (k + 1) * d);
    else copyInto(saved, k * d, all, at(running && name === "mean" ? p.runMean : running && name === "variance" ? p.runVar : p[name]), d);
  });
  const k = SAVED.length;
  if (step.activation === "relu") {
    if (p.beta) copyInto(saved, k * d, all, at(p.beta), d);
    else saved.fill(0, k * d, (k + 1) * d);
  }
}

/**
 * Rows per part of a batch normalized in parts (items for channels-first data, S > 1); rows
 * come in multiples of PART_ROWS_MULTIPLE so that each part starts on a whole SIMD group.
 */
export function partRows(n: number, d: number, S: number, elementBytes: number): number {
  const fit = Math.floor(PART_BYTES / (d * S * elementBytes));
  return Math.min(n, S > 1 ? Math.max(1, fit) : Math.max(PART_ROWS_MULTIPLE, fit - (fit % PART_ROWS_MULTIPLE)));
}

export interface BackwardStep {
  dtype: Dtype;
  shape: KernelShape;
  form: BackwardForm;
  /** The forward's (default 'none'); 'relu' reads beta too: from `saved`, or the block's. */
  activation?: Activation;
}

/** Where a backward's data comes from and goes: arrays to copy, or null when in the block already. */
export interface BackwardIO {
  dout: FloatArray | null;
  x: FloatArray | null;
  /** The forward's saved columns (SAVED order); gamma is ignored when `hasGamma` is false. */
  saved: FloatArray | null;
  hasGamma: boolean;
  /** false: beta is 0 (only read by a 'relu' step that has no `saved`). */
  hasBeta?: boolean;
  dx: FloatArray | null;
  dgamma: FloatArray | null;
  dbeta: FloatArray | null;
  /** The forward's checksum of x: the step refuses an x whose checksum is not this one. */
  checksum: Uint32Array | null;
}

/** What a backward throws for an x changed since its forward. */
export class ChangedInputError extends Error {
  /** "ChangedInputError", to tell it from other errors without instanceof. */
  override name = "ChangedInputError";
}

/** Runs one backward step. */
export function runBackward(engine: Engine, step: BackwardStep, io: BackwardIO, plan: BlockPlan, placed: Placed | null): void {
  const { heap, kernels } = engine;
  const { block, arrays } = reserve(engine, plan, placed, [io.dout, io.x, io.saved, io.dx, io.dgamma, io.dbeta]);
  const [dout, x, saved, dx, dgamma, dbeta] = arrays;
  const all = heap.all(step.dtype);
  const p = pointersOf(block.plan, block.base);
  const size = bytesPerElement(step.dtype);
  const at = (ptr: number) => ptr / size;
  const d = step.shape.d;
  if (dout) all.set(dout, at(p.dout));
  if (x) all.set(x, at(p.x));
  if (saved) {
    for (let k = 0; k < SAVED.length; k++) if (SAVED[k] !== "variance") copyInto(all, at(p[SAVED[k]]), saved, k * d, d);
    if (step.activation === "relu") copyInto(all, at(p.beta), saved, SAVED.length * d, d);
  }
  if (!io.hasGamma) p.gamma = 0;
  if (io.hasBeta === false && !saved) p.beta = 0;
  if (io.checksum) {
    const state = new Uint32Array(heap.buffer, p.checksum, CHECKSUM_WORDS).fill(0);
    const words = bytesPerElement(step.dtype) / 4;
    kernels.checksum(p.x, x!.length * words, 0, p.checksum);
    if (state.some((v, i) => v !== io.checksum![i])) {
      throw new ChangedInputError(
        "x was changed after the forward whose cache this is (the cache refers to x, as PyTorch's autograd does): run the forward again, or pass it a copy",
      );
    }
  }
  kernels.backward(step.dtype, step.form, step.shape, p, step.activation);
  if (dx) copyInto(dx, 0, all, at(p.dx), dx.length);
  if (dgamma) copyInto(dgamma, 0, all, at(p.dgamma), d);
  if (dbeta) copyInto(dbeta, 0, all, at(p.dbeta), d);
}
