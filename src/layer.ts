// The BatchNorm layer: parameters, running statistics and train/eval mode, plus the
// zero-copy path for training loops (BatchNormWorkspace).
//
// Parameter and gradient arrays (gamma, beta, dgamma, dbeta, runningMean, runningVar) are
// ordinary typed arrays that the layer owns and updates in place, so an optimizer can hold
// references to them. They are copied into the engine's memory on each call (O(D), small
// next to the O(N·D) data).
import { type ArrayOf, type Dtype, type FloatArray, arrayType, copyOf } from "./dtype.js";
import { layout } from "./memory.js";
import * as check from "./validate.js";
import { COMPACT_FORM, type Engine, GRAPH_FORM, engine } from "./wasm.js";
import { DEFAULT_EPS, DEFAULT_MOMENTUM } from "./functional.js";

export interface BatchNormOptions<D extends Dtype = Dtype> {
  /** default 1e-5 */
  eps?: number;
  /** running = momentum·running + (1 − momentum)·batch; default 0.9 (CS231n's direction). */
  momentum?: number;
  /** default 'float32'; sets the type of every array of the layer (ArrayOf<D>). */
  dtype?: D;
}

export class BatchNorm<D extends Dtype = "float32"> {
  readonly numFeatures: number;
  readonly dtype: D;
  eps: number;
  momentum: number;
  /** true after train(), false after eval(). */
  training = true;
  gamma: ArrayOf<D>;
  beta: ArrayOf<D>;
  runningMean: ArrayOf<D>;
  runningVar: ArrayOf<D>;
  /** Gradients of the last backward, overwritten in place by each backward. */
  dgamma: ArrayOf<D>;
  dbeta: ArrayOf<D>;
  /** The engine (backend) this layer's buffers live in: the active one when it was created. */
  readonly engine: Engine;
  private own: BatchNormWorkspace<D> | null = null;

  constructor(numFeatures: number, options: BatchNormOptions<D> = {}) {
    this.numFeatures = check.positiveInteger("numFeatures", numFeatures);
    if (options === null || typeof options !== "object") throw new TypeError("BatchNorm options must be an object");
    const dtype = options.dtype ?? "float32";
    if (dtype !== "float32" && dtype !== "float64") {
      throw new TypeError(`options.dtype must be 'float32' or 'float64', got ${JSON.stringify(dtype)}`);
    }
    this.dtype = dtype as D;
    this.eps = check.eps(options.eps ?? DEFAULT_EPS, "options.eps");
    this.momentum = check.momentum(options.momentum ?? DEFAULT_MOMENTUM, "options.momentum");
    const make = () => new (arrayType(dtype))(numFeatures) as ArrayOf<D>;
    this.gamma = make().fill(1) as ArrayOf<D>;
    this.beta = make();
    this.runningMean = make();
    this.runningVar = make().fill(1) as ArrayOf<D>;
    this.dgamma = make();
    this.dbeta = make();
    this.engine = engine();
  }

  /** Train mode (batch statistics, running statistics updated). */
  train(on = true): this {
    this.training = on;
    return this;
  }

  /** Eval mode (running statistics). */
  eval(): this {
    return this.train(false);
  }

  /** Normalizes row-major (N, numFeatures) x; returns a new array. */
  forward(x: ArrayOf<D>): ArrayOf<D> {
    check.floatArray("x", x, this.dtype);
    const n = check.rowsOf(x, this.numFeatures);
    if (this.own?.batchSize !== n) {
      this.own?.dispose();
      this.own = null;
      this.own = this.workspace(n);
    }
    this.own.x.set(x);
    return copyOf(this.own.forward());
  }

  /** Gradient with respect to the last forward's input; sets dgamma and dbeta. Returns a new array. */
  backward(dout: ArrayOf<D>): ArrayOf<D> {
    check.floatArray("dout", dout, this.dtype);
    const ws = this.own;
    if (!ws?.hasTrainCache) throw new Error("BatchNorm.backward needs a forward in train mode first");
    if (dout.length !== ws.batchSize * this.numFeatures) {
      throw new RangeError(
        `dout must have length ${ws.batchSize * this.numFeatures} (N = ${ws.batchSize} by D = ${this.numFeatures}, the shape of the last forward), got length ${dout.length}`,
      );
    }
    ws.dout.set(dout);
    return copyOf(ws.backward());
  }

  /** Buffers in the engine's memory for batches of `batchSize` rows: the zero-copy path. */
  workspace(batchSize: number): BatchNormWorkspace<D> {
    return new BatchNormWorkspace<D>(this, check.positiveInteger("batchSize", batchSize));
  }

  /** Frees the memory of the layer's own workspace (forward/backward allocate it again). */
  dispose(): void {
    this.own?.dispose();
    this.own = null;
  }

  /** @internal the arrays a kernel reads, checked: a user may have replaced them. */
  checkedState(): { gamma: FloatArray; beta: FloatArray; runningMean: FloatArray; runningVar: FloatArray } {
    const d = this.numFeatures;
    const shape = "numFeatures";
    return {
      gamma: check.floatArrayOfLength("layer.gamma", this.gamma, this.dtype, d, shape),
      beta: check.floatArrayOfLength("layer.beta", this.beta, this.dtype, d, shape),
      runningMean: check.floatArrayOfLength("layer.runningMean", this.runningMean, this.dtype, d, shape),
      runningVar: check.floatArrayOfLength("layer.runningVar", this.runningVar, this.dtype, d, shape),
    };
  }
}

const freeOnCollect = new FinalizationRegistry<{ engine: Engine; base: number }>(({ engine, base }) => engine.heap.free(base));

/**
 * The zero-copy path: x, out, dout and dx of one batch size live in the engine's memory.
 * Write the batch into `ws.x`, call forward(), read `ws.out`; write `ws.dout`, call
 * backward(), read `ws.dx` (and layer.dgamma / layer.dbeta). Nothing is copied but O(D)
 * parameters.
 *
 * Lifetime rules:
 * - The getters x/out/dout/dx return a view on the memory as it is now. When any allocation
 *   grows the memory (a larger batch, another workspace), views taken before are detached by
 *   the JavaScript engine and read as empty; take the view from the getter again. Passing a
 *   detached view to any function is refused with an error.
 * - out and dx are overwritten by the next forward()/backward() of this workspace; copy
 *   (slice) what must outlive it.
 * - dispose() frees the memory; every later use throws. A workspace that is garbage
 *   collected without dispose() is freed then.
 */
export class BatchNormWorkspace<D extends Dtype = "float32"> {
  readonly batchSize: number;
  private readonly layer: BatchNorm<D>;
  private readonly plan;
  private base: number;
  private state: "empty" | "train" | "test" = "empty";
  private views: Record<string, FloatArray> = {};
  private viewsOf: ArrayBuffer | null = null;

  /** @internal use layer.workspace(batchSize) */
  constructor(layer: BatchNorm<D>, batchSize: number) {
    this.layer = layer;
    this.batchSize = batchSize;
    const d = layer.numFeatures;
    const nd = batchSize * d;
    const t = layer.dtype;
    if (!Number.isSafeInteger(nd)) throw new RangeError(`batchSize ${batchSize} by ${d} features is too large`);
    this.plan = layout({
      x: [t, nd], out: [t, nd], dout: [t, nd], dx: [t, nd],
      gamma: [t, d], beta: [t, d], runMean: [t, d], runVar: [t, d], mean: [t, d], meanLo: [t, d],
      variance: [t, d], invStd: [t, d], dgamma: [t, d], dbeta: [t, d], work: ["float64", Math.ceil(layer.engine.kernels.workBytes(t, d) / 8)],
    });
    this.base = layer.engine.heap.alloc(this.plan.bytes);
    freeOnCollect.register(this, { engine: layer.engine, base: this.base }, this);
  }

  /** The batch input, (batchSize, numFeatures) row-major. */
  get x(): ArrayOf<D> {
    return this.view("x", true);
  }
  /** The output of the last forward(). */
  get out(): ArrayOf<D> {
    return this.view("out", true);
  }
  /** The upstream gradient for backward(). */
  get dout(): ArrayOf<D> {
    return this.view("dout", true);
  }
  /** dx of the last backward(). */
  get dx(): ArrayOf<D> {
    return this.view("dx", true);
  }
  /** Batch mean, variance and 1/sqrt(var + eps) of the last train-mode forward. */
  get mean(): ArrayOf<D> {
    return this.view("mean", false);
  }
  get variance(): ArrayOf<D> {
    return this.view("variance", false);
  }
  get invStd(): ArrayOf<D> {
    return this.view("invStd", false);
  }

  get hasTrainCache(): boolean {
    return this.state === "train";
  }

  /** Forward in the layer's mode (layer.training); returns the live view `out`. */
  forward(): ArrayOf<D> {
    const { layer } = this;
    const state = this.checkedLayerState();
    const eps = check.eps(layer.eps, "layer.eps");
    const momentum = check.momentum(layer.momentum, "layer.momentum");
    const { kernels } = layer.engine;
    const p = (key: keyof typeof this.plan.offsets) => this.base + this.plan.offsets[key];
    this.view("gamma", false).set(state.gamma);
    this.view("beta", false).set(state.beta);
    this.view("runMean", false).set(state.runningMean);
    this.view("runVar", false).set(state.runningVar);
    const n = this.batchSize;
    const d = layer.numFeatures;
    if (layer.training) {
      kernels.forwardTrain(
        layer.dtype, p("x"), n, d, p("gamma"), p("beta"), eps, momentum, p("runMean"), p("runVar"), p("out"),
        p("mean"), p("meanLo"), p("variance"), p("invStd"), p("work"),
      );
      state.runningMean.set(this.view("runMean", false));
      state.runningVar.set(this.view("runVar", false));
      this.state = "train";
    } else {
      kernels.forwardTest(layer.dtype, p("x"), n, d, p("gamma"), p("beta"), eps, p("runMean"), p("runVar"), p("out"), p("work"));
      this.state = "test";
    }
    return this.out;
  }

  /**
   * Backward of the last train-mode forward (compact form by default); writes dx and the
   * layer's dgamma/dbeta. Returns the live view `dx`.
   */
  backward(options: { form?: "compact" | "graph" } = {}): ArrayOf<D> {
    const { layer } = this;
    this.checkAlive();
    const form = options.form ?? "compact";
    if (form !== "compact" && form !== "graph") throw new RangeError(`options.form must be 'compact' or 'graph', got ${JSON.stringify(form)}`);
    if (this.state !== "train") throw new Error("BatchNormWorkspace.backward needs a forward() in train mode first");
    const d = layer.numFeatures;
    const dgamma = check.floatArrayOfLength("layer.dgamma", layer.dgamma, layer.dtype, d, "numFeatures");
    const dbeta = check.floatArrayOfLength("layer.dbeta", layer.dbeta, layer.dtype, d, "numFeatures");
    const p = (key: keyof typeof this.plan.offsets) => this.base + this.plan.offsets[key];
    layer.engine.kernels.backward(
      layer.dtype, form === "graph" ? GRAPH_FORM : COMPACT_FORM, p("dout"), p("x"), this.batchSize, d,
      p("gamma"), p("mean"), p("meanLo"), p("invStd"), p("dx"), p("dgamma"), p("dbeta"), p("work"),
    );
    dgamma.set(this.view("dgamma", false));
    dbeta.set(this.view("dbeta", false));
    return this.dx;
  }

  dispose(): void {
    if (this.base === 0) return;
    freeOnCollect.unregister(this);
    this.layer.engine.heap.free(this.base);
    this.base = 0;
    this.views = {};
  }

  private checkAlive(): void {
    if (this.base === 0) throw new Error("this BatchNormWorkspace was disposed");
  }

  private checkedLayerState() {
    this.checkAlive();
    return this.layer.checkedState();
  }

  private view(key: keyof typeof this.plan.offsets, rows: boolean): ArrayOf<D> {
    this.checkAlive();
    const { heap } = this.layer.engine;
    if (this.viewsOf !== heap.memory.buffer) {
      this.views = {};
      this.viewsOf = heap.memory.buffer;
    }
    const length = rows ? this.batchSize * this.layer.numFeatures : this.layer.numFeatures;
    return (this.views[key] ??= heap.view(this.layer.dtype, this.base + this.plan.offsets[key], length)) as ArrayOf<D>;
  }
}

