// The zero-copy path of LayerNorm, GroupNorm and InstanceNorm: one batch shape's data and
// statistics in one block of the engine's memory, for a training loop that copies nothing but
// O(C) parameters. forward() and backward() run the group kernels (engine.groups) on the
// block, the same kernels group-step.ts runs on copies.
import { type ArrayOf, type Dtype, type FloatArray } from "./dtype.js";
import { GROUP_SAVED, type GroupGeometry } from "./group-step.js";
import { BACKWARD_STEP, EVAL_FORM, type GroupPointers, type KernelShape, type Pointers, TEST_STEP } from "./kernels.js";
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
  /**
   * Whether the next forward normalizes each channel with running statistics (InstanceNorm in
   * eval mode with them): then they, validated. null: the group step.
   */
  workspaceRunning(): { runningMean: FloatArray; runningVar: FloatArray } | null;
}

type Name =
  | "x" | "out" | "dout" | "dx" | "gamma" | "beta" | "dgamma" | "dbeta" | (typeof GROUP_SAVED)[number]
  | "runMean" | "runVar" | "runInvStd" | "zeros" | "work";

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
  private readonly channels: KernelShape;
  private base: number;
  private state: "empty" | "group" | "running" = "empty";
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
    // A per-channel batch norm step (InstanceNorm's eval mode with running statistics).
    for (const name of ["runMean", "runVar", "runInvStd", "zeros"] as const) parts[name] = [dtype, C];
    this.channels = g.channelsLast ? { n: g.n * g.S, d: C, S: 1 } : { n: g.n, d: C, S: g.S };
    const { groups, kernels } = layer.engine;
    const work = Math.max(groups.workBytes(dtype, g), kernels.workBytes(dtype, this.channels, TEST_STEP), kernels.workBytes(dtype, this.channels, BACKWARD_STEP));
    parts.work = ["float64", Math.ceil(work / 8)];
    const { offsets, bytes } = layout(parts);
    this.offsets = offsets;
    this.base = layer.engine.heap.alloc(bytes);
    freeOnCollect.register(this, { engine: layer.engine, base: this.base }, this);
    this.view("zeros").fill(0);
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
    return this.state !== "empty";
  }

  /**
   * Forward on x; returns the live view `out`. InstanceNorm in eval mode with running
   * statistics normalizes each channel with them (the batch norm's test-mode step); mean,
   * meanLo and variance then still hold the last group forward's.
   */
  forward(): ArrayOf<D> {
    this.checkAlive();
    const { gamma, beta, eps } = this.layer.workspaceForward();
    const running = this.layer.workspaceRunning();
    this.view("gamma").set(gamma);
    this.view("beta").set(beta);
    const { dtype, engine } = this.layer;
    if (running) {
      this.view("runMean").set(running.runningMean);
      this.view("runVar").set(running.runningVar);
      engine.kernels.forwardTest(dtype, this.channels, this.channelPointers(), eps, false);
      this.state = "running";
      return this.out;
    }
    engine.groups.forward(dtype, this.g, this.pointers(), eps);
    this.state = "group";
    this.layer.workspaceForwardDone({ mean: this.view("mean"), meanLo: this.view("meanLo"), variance: this.view("variance") }, this.g);
    return this.out;
  }

  /**
   * Backward of the last forward from dout; writes dx and the layer's dgamma/dbeta. After a
   * forward with running statistics those are constants: dx = dout·γ/sqrt(runningVar + eps).
   * Returns the live view `dx`.
   */
  backward(): ArrayOf<D> {
    this.checkAlive();
    if (this.state === "empty") throw new Error("NormWorkspace.backward needs a forward() first");
    const { dgamma, dbeta } = this.layer.gradientTargets();
    const { dtype, engine } = this.layer;
    if (this.state === "running") {
      const p = this.channelPointers();
      engine.kernels.backward(dtype, EVAL_FORM, this.channels, { ...p, mean: p.runMean, meanLo: p.zeros, dgamma: dgamma ? p.dgamma : 0, dbeta: dbeta ? p.dbeta : 0 });
    } else {
      const p = this.pointers();
      engine.groups.backward(dtype, this.g, { ...p, dgamma: dgamma ? p.dgamma : 0, dbeta: dbeta ? p.dbeta : 0 });
    }
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

  /** The block as a per-channel batch norm step's arrays (zeros: meanLo 0 for the eval backward). */
  private channelPointers(): Pointers & { zeros: number } {
    const at = (name: Name) => this.base + this.offsets[name];
    return {
      x: at("x"), out: at("out"), dout: at("dout"), dx: at("dx"), gamma: at("gamma"), beta: at("beta"),
      runMean: at("runMean"), runVar: at("runVar"), mean: 0, meanLo: 0, variance: 0, invStd: at("runInvStd"),
      dgamma: at("dgamma"), dbeta: at("dbeta"), work: at("work"), checksum: 0, zeros: at("zeros"),
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
      : GROUP_SAVED.includes(name as (typeof GROUP_SAVED)[number]) ? this.statistics : this.g.G * this.g.K;
    return (this.views[name] ??= heap.view(this.layer.dtype, this.base + this.offsets[name], length)) as ArrayOf<D>;
  }
}
