// The step runner of LayerNorm, GroupNorm and InstanceNorm, in step.ts's order: (the caller
// validates,) reserve scratch memory, derive views, copy in, run the kernels, copy out.
// Data goes in and out as the caller stores it: (n, G, K, S), or (n, S, G, K) channels last
// (see GroupShape); the kernels read either.
import { type Dtype, type FloatArray, bytesPerElement, copyInto } from "./dtype.js";
import { CHECKSUM_WORDS, type GroupPointers, type GroupShape } from "./kernels.js";
import { layout } from "./memory.js";
import { ChangedInputError } from "./step.js";
import { type Engine } from "./wasm.js";

/** Order of the per-statistic values a forward saves: n·G each. */
export const GROUP_SAVED = ["mean", "meanLo", "variance", "invStd"] as const;

/** A step's data geometry: the kernels' shape, with whether x is stored channels last. */
export type GroupGeometry = GroupShape;

type Name = "x" | "out" | "dout" | "dx" | "gamma" | "beta" | "mean" | "meanLo" | "variance" | "invStd" | "dgamma" | "dbeta" | "checksum";

/** Reserves scratch for `names` and returns the pointers, with the caller's arrays re-derived after growth. */
function reserve<T extends FloatArray[]>(engine: Engine, dtype: Dtype, s: GroupShape, names: Name[], arrays: T): { p: GroupPointers & { checksum: number }; arrays: T } {
  const size = s.n * s.G * s.K * s.S;
  const parts = {} as Record<string, [Dtype, number]>;
  for (const name of names) {
    const length = name === "x" || name === "out" || name === "dout" || name === "dx" ? size
      : name === "gamma" || name === "beta" || name === "dgamma" || name === "dbeta" ? s.G * s.K : s.n * s.G;
    parts[name] = name === "checksum" ? ["float64", CHECKSUM_WORDS / 2] : [dtype, length];
  }
  parts.work = ["float64", Math.ceil(engine.groups.workBytes(dtype, s) / 8)];
  const { offsets, bytes } = layout(parts);
  const pins = arrays.map((a) => engine.heap.pin(a));
  const base = engine.heap.scratch(bytes);
  const at = (name: string) => (offsets[name] === undefined ? 0 : base + offsets[name]);
  const p = {
    x: at("x"), out: at("out"), dout: at("dout"), dx: at("dx"), gamma: at("gamma"), beta: at("beta"),
    mean: at("mean"), meanLo: at("meanLo"), variance: at("variance"), invStd: at("invStd"),
    dgamma: at("dgamma"), dbeta: at("dbeta"), work: at("work"), checksum: at("checksum"),
  };
  return { p, arrays: pins.map((get) => get()) as T };
}

/**
 * One forward: out and the statistics (saved, GROUP_SAVED order, n·G each) and, when
 * `checksum` is given, the checksum of x. gamma and beta are G·K values (ones and zeros for
 * a norm without affine parameters). Nothing the caller passed is written before the kernels ran.
 */
export function runGroupForward(
  engine: Engine, dtype: Dtype, g: GroupGeometry, eps: number,
  io: { x: FloatArray; gamma: FloatArray; beta: FloatArray; out: FloatArray; saved: FloatArray | null; checksum: Uint32Array | null },
): void {
  const { heap, kernels } = engine;
  const { p, arrays } = reserve(engine, dtype, g, ["x", "out", "gamma", "beta", "mean", "meanLo", "variance", "invStd", "checksum"], [io.x, io.gamma, io.beta, io.out]);
  const [x, gamma, beta, out] = arrays;
  const all = heap.all(dtype);
  const size = bytesPerElement(dtype);
  const at = (ptr: number) => ptr / size;
  copyInto(all, at(p.x), x, 0, x.length);
  copyInto(all, at(p.gamma), gamma, 0, gamma.length);
  copyInto(all, at(p.beta), beta, 0, beta.length);
  if (io.checksum) {
    new Uint32Array(heap.buffer, p.checksum, CHECKSUM_WORDS).fill(0);
    kernels.checksum(p.x, (x.length * size) / 4, 0, p.checksum);
  }
  engine.groups.forward(dtype, g, p, eps);
  copyInto(out, 0, all, at(p.out), out.length);
  const R = g.n * g.G;
  if (io.saved) GROUP_SAVED.forEach((name, k) => copyInto(io.saved!, k * R, all, at(p[name]), R));
  if (io.checksum) io.checksum.set(new Uint32Array(heap.buffer, p.checksum, CHECKSUM_WORDS));
}

/**
 * One backward from dout, the forward's x, gamma and saved statistics; dx, dgamma, dbeta
 * written where given (null: not computed). With `checksum`, an x changed since the forward
 * is refused (ChangedInputError) before anything is written.
 */
export function runGroupBackward(
  engine: Engine, dtype: Dtype, g: GroupGeometry,
  io: {
    dout: FloatArray; x: FloatArray; gamma: FloatArray; saved: FloatArray; checksum: Uint32Array | null;
    dx: FloatArray | null; dgamma: FloatArray | null; dbeta: FloatArray | null;
  },
): void {
  const { heap, kernels } = engine;
  const names: Name[] = ["dout", "x", "gamma", "mean", "meanLo", "invStd", "dgamma", "dbeta", "checksum"];
  if (io.dx) names.push("dx");
  const { p, arrays } = reserve(engine, dtype, g, names, [io.dout, io.x, io.gamma, io.saved]);
  const [dout, x, gamma, saved] = arrays;
  const all = heap.all(dtype);
  const size = bytesPerElement(dtype);
  const at = (ptr: number) => ptr / size;
  copyInto(all, at(p.dout), dout, 0, dout.length);
  copyInto(all, at(p.x), x, 0, x.length);
  copyInto(all, at(p.gamma), gamma, 0, gamma.length);
  const R = g.n * g.G;
  for (const name of ["mean", "meanLo", "invStd"] as const) copyInto(all, at(p[name]), saved, GROUP_SAVED.indexOf(name) * R, R);
  if (io.checksum) {
    const state = new Uint32Array(heap.buffer, p.checksum, CHECKSUM_WORDS).fill(0);
    kernels.checksum(p.x, (x.length * size) / 4, 0, p.checksum);
    if (state.some((v, i) => v !== io.checksum![i])) {
      throw new ChangedInputError(
        "x was changed after the forward whose cache this is (the cache refers to x, as PyTorch's autograd does): run the forward again, or pass it a copy",
      );
    }
  }
  engine.groups.backward(dtype, g, p);
  if (io.dx) copyInto(io.dx, 0, all, at(p.dx), io.dx.length);
  const C = g.G * g.K;
  if (io.dgamma) copyInto(io.dgamma, 0, all, at(p.dgamma), C);
  if (io.dbeta) copyInto(io.dbeta, 0, all, at(p.dbeta), C);
}
