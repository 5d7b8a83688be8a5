// The zero-copy path: a batch shape's data and statistics in one block of the engine's
// memory, for a training loop that copies nothing but O(C) parameters. It runs the same
// steps as every other call (step.ts), with its own block in place of scratch.
import { type ArrayOf, type Dtype, type FloatArray } from "./dtype.js";
import { type ArrayName, type BlockPlan, blockPlan } from "./block.js";
import { type Activation, BACKWARD_RELU_STEP, BACKWARD_STEP, COMPACT_FORM, EVAL_FORM, GRAPH_FORM, TEST_STEP, TRAIN_STEP } from "./kernels.js";
import { type Geometry } from "./shape.js";
import { type ForwardStep, type Placed, runBackward, runForward } from "./step.js";
import * as check from "./validate.js";
import { type Engine } from "./wasm.js";

/** What a workspace needs of its layer (BatchNorm implements it). */
export interface WorkspaceLayer<D extends Dtype> {
  readonly dtype: D;
  readonly numFeatures: number;
  readonly engine: Engine;
  /** The activation fused into every step: a 'relu' workspace's backward masks dout. */
  readonly activation: Activation;
  /** The next forward of this shape, validated: throws, changing nothing, on a bad layer state. */
  forwardStep(geo: Geometry): ForwardStep;
  /** Counts a forward step that has run. */
  forwardDone(step: ForwardStep): void;
  /** The arrays a backward writes dgamma and dbeta into (null: not learned), validated. */
  gradientTargets(): { dgamma: FloatArray | null; dbeta: FloatArray | null; hasGamma: boolean; hasBeta: boolean };
}

const BLOCK_ARRAYS: readonly ArrayName[] = [
  "x", "out", "dout", "dx", "gamma", "beta", "runMean", "runVar", "mean", "meanLo", "variance", "invStd", "dgamma", "dbeta",
];

/** A workspace's forward copies nothing in or out. */
const NO_FORWARD_IO = { x: null, out: null, saved: null, checksum: null } as const;

const freeOnCollect = new FinalizationRegistry<{ engine: Engine; base: number }>(({ engine, base }) => engine.heap.free(base));

/**
 * The zero-copy path: x, out, dout and dx of one batch shape live in the engine's memory.
 * Write the batch into `ws.x`, call forward(), read `ws.out`; write `ws.dout`, call
 * backward(), read `ws.dx` (and layer.dgamma / layer.dbeta). Nothing is copied but O(C)
 * parameters.
 *
 * Sizes: x, out, dout and dx hold exactly `size` values (the batch shape's N·C·H·W), mean,
 * variance and invStd C (numFeatures). A view's length is fixed, so `ws.x.set(batch)` with a longer batch
 * throws the engine's own "offset is out of bounds" RangeError: set a batch of exactly
 * `ws.size` values, or make a workspace of the new shape with layer.workspace(shape).
 *
 * Lifetime rules:
 * - The getters x/out/dout/dx return a view on the memory as it is now. When any allocation
 *   grows the memory (a larger batch, another workspace, a functional call), views taken
 *   before are detached by the JavaScript engine and read as empty; take the view from the
 *   getter again. A view passed to a call that itself grows the memory is re-derived by the
 *   call; a view detached before the call is refused with an error. On a threaded engine
 *   (shared memory) growth detaches nothing: an old view keeps the old buffer, on the same
 *   bytes, and calls treat it as a fresh one (docs/threads.md, "Views of shared memory").
 * - out and dx are overwritten by the next forward()/backward() of this workspace; copy
 *   what must outlive it.
 * - dispose() frees the memory; every later use throws. A workspace that is garbage
 *   collected without dispose() is freed then.
 */
export class BatchNormWorkspace<D extends Dtype = "float32"> {
  /** The logical shape, [N, C] or [N, C, ...spatial]. */
  readonly shape: readonly number[];
  /** N, the batch size. */
  readonly batchSize: number;
  /** Values in x (and out, dout, dx). */
  readonly size: number;
  private readonly layer: WorkspaceLayer<D>;
  private readonly geo: Geometry;
  private readonly plan: BlockPlan;
  private base: number;
  private state: "empty" | "train" | "frozen" = "empty";
  private views: Partial<Record<ArrayName, FloatArray>> = {};
  private viewsOf: ArrayBuffer | null = null;

  /** @internal use layer.workspace(shape) */
  constructor(layer: WorkspaceLayer<D>, geo: Geometry) {
    this.layer = layer;
    this.geo = geo;
    this.shape = geo.shape;
    this.batchSize = geo.shape[0];
    this.size = geo.n * geo.S * geo.d;
    const backward = layer.activation === "relu" ? BACKWARD_RELU_STEP : BACKWARD_STEP;
    this.plan = blockPlan(layer.engine, layer.dtype, geo, BLOCK_ARRAYS, [TEST_STEP, TRAIN_STEP, backward]);
    this.base = layer.engine.heap.alloc(this.plan.bytes);
    freeOnCollect.register(this, { engine: layer.engine, base: this.base }, this);
  }

  /** The batch input, in the layer's layout: exactly `size` values (set() of more throws). */
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
  /** Mean, variance and 1/sqrt(var + eps) the last forward normalized with. */
  get mean(): ArrayOf<D> {
    return this.view("mean");
  }
  /** The variance the last forward normalized with, one value per channel. */
  get variance(): ArrayOf<D> {
    return this.view("variance");
  }
  /** 1/sqrt(variance + eps) of the last forward, one value per channel. */
  get invStd(): ArrayOf<D> {
    return this.view("invStd");
  }

  /** Whether a forward has run, so that backward() can. */
  get hasCache(): boolean {
    return this.state !== "empty";
  }

  /** Forward in the layer's mode (layer.training); returns the live view `out`. */
  forward(): ArrayOf<D> {
    this.checkAlive();
    this.run(this.layer.forwardStep(this.geo));
    return this.out;
  }

  /** @internal A validated step on the data in x (layer.forward has copied it in). */
  run(step: ForwardStep): void {
    runForward(this.layer.engine, step, NO_FORWARD_IO, this.planOf, this.placed());
    if (step.statistics === "running") {
      // The frozen statistics, for an eval-mode backward (invStd came from the kernel).
      this.view("mean").set(step.params.runMean!);
      this.view("meanLo").fill(0);
      this.view("variance").set(step.params.runVar!);
      this.state = "frozen";
    } else {
      this.state = "train";
    }
    this.layer.forwardDone(step);
  }

  /**
   * Backward of the last forward; writes dx and the layer's dgamma/dbeta. After a train-mode
   * forward, the batch statistics depend on x (compact form by default); after an eval-mode
   * forward, the running statistics are constants (fine-tuning with frozen statistics):
   * dx = dout·gamma/sqrt(runningVar + eps). Returns the live view `dx`.
   */
  backward(options?: { form?: "compact" | "graph" }): ArrayOf<D> {
    this.checkAlive();
    const form = options === undefined ? "compact" : formOf(options);
    if (this.state === "empty") throw new Error("BatchNormWorkspace.backward needs a forward() first");
    const targets = this.layer.gradientTargets();
    const kernelForm = this.state === "frozen" ? EVAL_FORM : form === "graph" ? GRAPH_FORM : COMPACT_FORM;
    // The block holds the forward's gamma and beta (a 'relu' backward recomputes its mask from them).
    runBackward(this.layer.engine, { dtype: this.layer.dtype, shape: this.geo, form: kernelForm, activation: this.layer.activation }, {
      dout: null, x: null, saved: null, dx: null, ...targets, checksum: null,
    }, this.plan, this.placed());
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

  private placed(): Placed {
    if (this.block?.base !== this.base) this.block = { plan: this.plan, base: this.base };
    return this.block;
  }
  private block: Placed | null = null;
  private readonly planOf = () => this.plan;

  private checkAlive(): void {
    if (this.base === 0) throw new Error("this BatchNormWorkspace was disposed");
  }

  private view(key: ArrayName): ArrayOf<D> {
    this.checkAlive();
    const { heap } = this.layer.engine;
    if (this.viewsOf !== heap.buffer) {
      this.views = {};
      this.viewsOf = heap.buffer;
    }
    const data = key === "x" || key === "out" || key === "dout" || key === "dx";
    const length = data ? this.size : this.layer.numFeatures;
    return (this.views[key] ??= heap.view(this.layer.dtype, this.base + this.plan.offsets[key]!, length)) as ArrayOf<D>;
  }
}

/** The backward form that workspace.backward(options) asks for. */
function formOf(options: { form?: "compact" | "graph" }): "compact" | "graph" {
  if (options === null || typeof options !== "object") throw new TypeError("backward options must be an object like { form: 'graph' }");
  check.knownKeys("backward options", options, ["form"]);
  const form = options.form ?? "compact";
  if (form !== "compact" && form !== "graph") throw new RangeError(`options.form must be 'compact' or 'graph', got ${check.shown(form)}`);
  return form;
}
