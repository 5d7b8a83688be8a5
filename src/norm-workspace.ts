// The zero-copy path of LayerNorm, GroupNorm and InstanceNorm: one batch shape's data and
// statistics in one block of the engine's memory, for a training loop that copies nothing but
// O(C) parameters. forward() and backward() run the group kernels (engine.groups) on the
// block, the same kernels group-step.ts runs on copies.
import { type ArrayOf, type Dtype, type FloatArray } from "./dtype.js";
import { GROUP_SAVED, type GroupGeometry } from "./group-step.js";
import type { GroupPointers } from "./kernels.js";
import { layout } from "./memory.js";
import { type Engine } from "./wasm.js";

/** What a NormWorkspace needs of its layer (the norm layers implement it). */
export interface NormWorkspaceLayer<D extends Dtype> {
  readonly dtype: D;
  readonly numFeatures: number;
  readonly engine: Engine;
  /** gamma and beta (ones and zeros when absent) and eps for a forward, validated: throws, changing nothing, on a bad layer state or mode. */
  workspaceForward(): { gamma: FloatArray; beta: FloatArray; eps: number };
  /** After a forward: the statistics it computed (InstanceNorm updates its running statistics). */
  workspaceForwardDone(stats: { mean: FloatArray; meanLo: FloatArray; variance: FloatArray }, g: GroupGeometry): void;
  /** The arrays a backward writes dgamma and dbeta into (null: not learned), validated. */
  gradientTargets(): { dgamma: FloatArray | null; dbeta: FloatArray | null };
}

type Name = "x" | "out" | "dout" | "dx" | "gamma" | "beta" | "dgamma" | "dbeta" | (typeof GROUP_SAVED)[number] | "work";

const freeOnCollect = new FinalizationRegistry<{ engine: Engine; base: number }>(({ engine, base }) => engine.heap.free(base));

/**
 * The zero-copy path of a LayerNorm, GroupNorm or InstanceNorm layer: x, out, dout and dx of
 * one batch shape live in the engine's memory. Write the batch into `ws.x` (in the layer's
 * layout), call forward(), read `ws.out`; write `ws.dout`, call backward(), read `ws.dx`
 * (and layer.dgamma / layer.dbeta). Nothing is copied but O(C) parameters.
 *
 * backward() differentiates the last forward() at the x the block holds then: change ws.x
 * between them only to run a new forward. The forward's gamma is kept in the block for the
 * backward. The lifetime rules are the batch norm workspace's (BatchNormWorkspace): a view
 * taken before the memory grew is detached (or, on a threaded engine, left on the old
 * buffer): take it from the getter again; out and dx are overwritten by the next call;
 * dispose() frees the block, and a workspace collected without it is freed then.
 */
export class NormWorkspace<D extends Dtype = "float32"> {
  /** The logical shape the layer was given. */
  readonly shape: readonly number[];
  /** Values in x (and out, dout, dx). */
  readonly size: number;
  /** Statistics per forward: one per row (LayerNorm), per (sample, group) (GroupNorm, InstanceNorm). */
  readonly statistics: number;
  private readonly layer: NormWorkspaceLayer<D>;
  private readonly g: GroupGeometry;
  private readonly offsets: Record<Name, number>;
  private base: number;
  private ran = false;
  private views: Partial<Record<Name, FloatArray>> = {};
  private viewsOf: ArrayBuffer | null = null;

  /** @internal use layer.workspace(shape) */
  constructor(layer: NormWorkspaceLayer<D>, g: GroupGeometry, shape: readonly number[]) {
    this.layer = layer;
    this.g = g;
    this.shape = Object.freeze([...shape]);
    this.size = g.n * g.G * g.K * g.S;
    this.statistics = g.n * g.G;
    const { dtype } = layer;
    const C = g.G * g.K;
    const parts = {} as Record<Name, [Dtype, number]>;
    for (const name of ["x", "out", "dout", "dx"] as const) parts[name] = [dtype, this.size];
    for (const name of ["gamma", "beta", "dgamma", "dbeta"] as const) parts[name] = [dtype, C];
    for (const name of GROUP_SAVED) parts[name] = [dtype, this.statistics];
    parts.work = ["float64", Math.ceil(layer.engine.groups.workBytes(dtype, g) / 8)];
    const { offsets, bytes } = layout(parts);
    this.offsets = offsets;
    this.base = layer.engine.heap.alloc(bytes);
    freeOnCollect.register(this, { engine: layer.engine, base: this.base }, this);
  }

  /** The batch input, in the layer's layout: exactly `size` values. */
  get x(): ArrayOf<D> {
    return this.view("x");
  }
  /** The output of the last forward(). */
  get out(): ArrayOf<D> {
    return this.view("out");
  }
  /** The upstream gradient for backward(). */
  get dout(): ArrayOf<D> {
    return this.view("dout");
  }
  /** dx of the last backward(). */
  get dx(): ArrayOf<D> {
    return this.view("dx");
  }
  /** The mean of each statistic of the last forward (mean + meanLo: to twice the precision). */
  get mean(): ArrayOf<D> {
    return this.view("mean");
  }
  /** What the mean rounds away. */
  get meanLo(): ArrayOf<D> {
    return this.view("meanLo");
  }
  /** The biased variance of each statistic of the last forward. */
  get variance(): ArrayOf<D> {
    return this.view("variance");
  }
  /** 1/sqrt(variance + eps) of each statistic of the last forward. */
  get invStd(): ArrayOf<D> {
    return this.view("invStd");
  }
  /** Whether a forward has run, so that backward() can. */
  get hasCache(): boolean {
    return this.ran;
  }

  /** Forward on x; returns the live view `out`. */
  forward(): ArrayOf<D> {
    this.checkAlive();
    const { gamma, beta, eps } = this.layer.workspaceForward();
    this.view("gamma").set(gamma);
    this.view("beta").set(beta);
    this.layer.engine.groups.forward(this.layer.dtype, this.g, this.pointers(), eps);
    this.ran = true;
    this.layer.workspaceForwardDone({ mean: this.view("mean"), meanLo: this.view("meanLo"), variance: this.view("variance") }, this.g);
    return this.out;
  }

  /** Backward of the last forward from dout; writes dx and the layer's dgamma/dbeta. Returns the live view `dx`. */
  backward(): ArrayOf<D> {
    this.checkAlive();
    if (!this.ran) throw new Error("NormWorkspace.backward needs a forward() first");
    const { dgamma, dbeta } = this.layer.gradientTargets();
    const p = this.pointers();
    this.layer.engine.groups.backward(this.layer.dtype, this.g, { ...p, dgamma: dgamma ? p.dgamma : 0, dbeta: dbeta ? p.dbeta : 0 });
    dgamma?.set(this.view("dgamma"));
    dbeta?.set(this.view("dbeta"));
    return this.dx;
  }

  /** Frees the memory of the workspace; every later use throws. Calling it again does nothing. */
  dispose(): void {
    if (this.base === 0) return;
    freeOnCollect.unregister(this);
    this.layer.engine.heap.free(this.base);
    this.base = 0;
    this.views = {};
  }

  private pointers(): GroupPointers {
    const at = (name: Name) => this.base + this.offsets[name];
    return {
      x: at("x"), out: at("out"), dout: at("dout"), dx: at("dx"), gamma: at("gamma"), beta: at("beta"),
      mean: at("mean"), meanLo: at("meanLo"), variance: at("variance"), invStd: at("invStd"),
      dgamma: at("dgamma"), dbeta: at("dbeta"), work: at("work"),
    };
  }

  private checkAlive(): void {
    if (this.base === 0) throw new Error("this NormWorkspace was disposed");
  }

  private view(name: Exclude<Name, "work">): ArrayOf<D> {
    this.checkAlive();
    const { heap } = this.layer.engine;
    if (this.viewsOf !== heap.buffer) {
      this.views = {};
      this.viewsOf = heap.buffer;
    }
    const length = name === "x" || name === "out" || name === "dout" || name === "dx" ? this.size
      : name === "gamma" || name === "beta" || name === "dgamma" || name === "dbeta" ? this.g.G * this.g.K : this.statistics;
    return (this.views[name] ??= heap.view(this.layer.dtype, this.base + this.offsets[name], length)) as ArrayOf<D>;
  }
}
