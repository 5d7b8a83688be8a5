// One step's block of the engine's memory: the arrays it works on, laid out once (memory.ts's
// layout), and their addresses as a Pointers record for the kernels. The functional API
// lays out a block per call shape (remembered: training loops repeat a shape); a workspace
// keeps one for its life.
import { type Dtype, bytesPerElement } from "./dtype.js";
import { CHECKSUM_WORDS, type KernelShape, type Pointers, type WorkStep } from "./kernels.js";
import { layout } from "./memory.js";
import { type Engine } from "./wasm.js";

/** Arrays of n·d·S values. */
export type DataName = "x" | "out" | "dout" | "dx";
/** Arrays of d values. */
export type ColumnName = "gamma" | "beta" | "runMean" | "runVar" | "mean" | "meanLo" | "variance" | "invStd" | "dgamma" | "dbeta";
/** "checksum": the state of an order-sensitive checksum of x (CHECKSUM_WORDS u32). */
export type ArrayName = DataName | ColumnName | "checksum";

export interface BlockPlan {
  readonly dtype: Dtype;
  readonly shape: KernelShape;
  /** Byte offset of each array in the block; the kernels' work area is "work". */
  readonly offsets: Readonly<Partial<Record<ArrayName | "work", number>>>;
  /** The block's size; a float64 count, which may exceed what a memory can hold. */
  readonly bytes: number;
}

const DATA_NAMES: readonly string[] = ["x", "out", "dout", "dx"];

/** The block for `names` of (n, d, S) data and a work area for each of `steps`. */
export function blockPlan(engine: Engine, dtype: Dtype, shape: KernelShape, names: readonly ArrayName[], steps: readonly WorkStep[]): BlockPlan {
  const size = shape.n * shape.d * shape.S;
  const parts = {} as Record<string, [Dtype, number]>;
  for (const name of names) {
    parts[name] = name === "checksum" ? ["float64", CHECKSUM_WORDS / 2] : [dtype, DATA_NAMES.includes(name) ? size : shape.d];
  }
  const work = Math.max(16, ...steps.map((step) => engine.kernels.workBytes(dtype, shape, step)));
  parts.work = ["float64", Math.ceil(work / 8)];
  const { offsets, bytes } = layout(parts);
  return { dtype, shape, offsets, bytes };
}

/** A function like blockPlan that remembers its last plan (a training loop repeats one shape). */
export function rememberedPlan(names: readonly ArrayName[], steps: readonly WorkStep[]) {
  let last: BlockPlan | null = null;
  let lastEngine: Engine | null = null;
  return (engine: Engine, dtype: Dtype, shape: KernelShape): BlockPlan => {
    const s = last?.shape;
    if (last && lastEngine === engine && last.dtype === dtype && s!.n === shape.n && s!.d === shape.d && s!.S === shape.S) return last;
    lastEngine = engine;
    return (last = blockPlan(engine, dtype, { n: shape.n, d: shape.d, S: shape.S }, names, steps));
  };
}

/** The arrays' addresses for a block at `base`; 0 for the arrays it does not hold. */
export function pointersOf(plan: BlockPlan, base: number): Pointers {
  const o = plan.offsets;
  const at = (offset: number | undefined) => (offset === undefined ? 0 : base + offset);
  return {
    x: at(o.x), out: at(o.out), dout: at(o.dout), dx: at(o.dx),
    gamma: at(o.gamma), beta: at(o.beta), runMean: at(o.runMean), runVar: at(o.runVar),
    mean: at(o.mean), meanLo: at(o.meanLo), variance: at(o.variance), invStd: at(o.invStd),
    dgamma: at(o.dgamma), dbeta: at(o.dbeta), work: at(o.work), checksum: at(o.checksum),
  };
}

/** The element index of a pointer in a whole-memory view of the plan's dtype. */
export function elementOf(plan: BlockPlan, ptr: number): number {
  return ptr / bytesPerElement(plan.dtype);
}
