// The BatchNorm layer: parameters, running statistics, train/eval mode and the conventions
// of other frameworks, plus the zero-copy path for training loops (BatchNormWorkspace).
//
// Parameter and gradient arrays (gamma, beta, dgamma, dbeta, runningMean, runningVar) are
// ordinary typed arrays that the layer owns and updates in place, so an optimizer can hold
// references to them. They are copied into the engine's memory on each call (O(C), small
// next to the data).
import { type ArrayOf, type Dtype, type FloatArray, arrayType, copyOf } from "./dtype.js";
import { type RunningStatsOptions, type RunningStatsRule, runningStatsRule, stepFactors } from "./conventions.js";
import { layout } from "./memory.js";
import { type Geometry, type Layout, checkLayout, geometry } from "./shape.js";
import * as check from "./validate.js";
import { COMPACT_FORM, type Engine, EVAL_FORM, GRAPH_FORM, engine } from "./wasm.js";
import { DEFAULT_EPS, DEFAULT_MOMENTUM } from "./functional.js";

/** Options of new BatchNorm(numFeatures, options); any key not declared here is refused. */
export interface BatchNormOptions<D extends Dtype = Dtype> extends RunningStatsOptions {
  /** default 1e-5 */
  eps?: number;
  /** Learnable gamma and beta (default true); false: gamma = 1, beta = 0, no gradients. */
  affine?: boolean;
  /** Keras' names for the two halves of affine: scale (gamma) and center (beta). */
  scale?: boolean;
  center?: boolean;
  /** Keep running statistics (default true); false: batch statistics in eval mode too. */
  trackRunningStats?: boolean;
  /** How (N, C, L) and (N, C, H, W) inputs are stored: 'NCHW' (default) or 'NHWC'. */
  layout?: Layout;
  /** default 'float32'; sets the type of every array of the layer (ArrayOf<D>). */
  dtype?: D;
}

/** Every key of BatchNormOptions: any other is refused (see check.knownKeys). */
const OPTION_KEYS = [
  "eps", "momentum", "momentumConvention", "runningVariance", "affine", "scale", "center", "trackRunningStats", "layout", "dtype",
] as const satisfies readonly (keyof BatchNormOptions)[];

/** PyTorch's state_dict names; Keras' weight names. Plain arrays, JSON-serializable. */
export interface PyTorchState {
  weight?: number[];
  bias?: number[];
  running_mean?: number[];
  running_var?: number[];
  num_batches_tracked?: number;
}
export interface KerasState {
  gamma?: number[];
  beta?: number[];
  moving_mean?: number[];
  moving_variance?: number[];
}

/** The state's keys in each framework's names; Keras keeps no batch count. */
const STATE_NAMES = {
  pytorch: { gamma: "weight", beta: "bias", mean: "running_mean", variance: "running_var", count: "num_batches_tracked" },
  keras: { gamma: "gamma", beta: "beta", mean: "moving_mean", variance: "moving_variance", count: null },
} as const;
type StateNames = (typeof STATE_NAMES)[keyof typeof STATE_NAMES];

/** A batch: the data and, for (N, C, L) or (N, C, H, W) data, its logical shape. */
type BatchShape = number | readonly number[];

export class BatchNorm<D extends Dtype = "float32"> {
  readonly numFeatures: number;
  readonly dtype: D;
  eps: number;
  /** See RunningStatsOptions; null is the cumulative average. */
  momentum: number | null;
  readonly momentumConvention: "cs231n" | "pytorch";
  readonly runningVariance: "biased" | "unbiased";
  readonly useGamma: boolean;
  readonly useBeta: boolean;
  readonly trackRunningStats: boolean;
  readonly layout: Layout;
  /** true after train(), false after eval(). */
  training = true;
  /** Train-mode forwards since creation (or as loaded); drives momentum = null. */
  numBatchesTracked = 0;
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
    check.knownKeys("BatchNorm options", options, OPTION_KEYS);
    const dtype = options.dtype ?? "float32";
    if (dtype !== "float32" && dtype !== "float64") {
      throw new TypeError(`options.dtype must be 'float32' or 'float64', got ${JSON.stringify(dtype)}`);
    }
    this.dtype = dtype as D;
    this.eps = check.eps(options.eps ?? DEFAULT_EPS, "options.eps");
    const rule = runningStatsRule(options, "options.", DEFAULT_MOMENTUM);
    this.momentum = rule.momentum;
    this.momentumConvention = rule.convention;
    this.runningVariance = rule.unbiased ? "unbiased" : "biased";
    const flag = (name: string, value: unknown, fallback: boolean) => {
      if (value === undefined) return fallback;
      if (typeof value !== "boolean") throw new TypeError(`options.${name} must be true or false, got ${JSON.stringify(value)}`);
      return value;
    };
    const affine = flag("affine", options.affine, true);
    this.useGamma = flag("scale", options.scale, affine);
    this.useBeta = flag("center", options.center, affine);
    this.trackRunningStats = flag("trackRunningStats", options.trackRunningStats, true);
    this.layout = checkLayout(options.layout ?? "NCHW", "options.layout");
    const make = () => new (arrayType(dtype))(numFeatures) as ArrayOf<D>;
    this.gamma = make().fill(1) as ArrayOf<D>;
    this.beta = make();
    this.runningMean = make();
    this.runningVar = make().fill(1) as ArrayOf<D>;
    this.dgamma = make();
    this.dbeta = make();
    this.engine = engine();
  }

  /**
   * PyTorch's BatchNorm1d/2d/3d, spelled as in PyTorch: momentum is the weight of the new
   * batch (default 0.1, null for the cumulative average), the running variance is unbiased,
   * eps 1e-5, channels first.
   */
  static fromPyTorch<D extends Dtype = "float32">(options: {
    num_features: number; eps?: number; momentum?: number | null; affine?: boolean; track_running_stats?: boolean; dtype?: D;
  }): BatchNorm<D> {
    if (options === null || typeof options !== "object") throw new TypeError("fromPyTorch options must be an object like { num_features: 64 }");
    check.knownKeys("fromPyTorch options", options, ["num_features", "eps", "momentum", "affine", "track_running_stats", "dtype"]);
    return new BatchNorm<D>(options.num_features, {
      eps: options.eps ?? 1e-5, momentum: options.momentum === undefined ? 0.1 : options.momentum, momentumConvention: "pytorch",
      runningVariance: "unbiased", affine: options.affine ?? true, trackRunningStats: options.track_running_stats ?? true,
      layout: "NCHW", dtype: options.dtype,
    });
  }

  /**
   * Keras' BatchNormalization, spelled as in Keras: momentum 0.99 (weight of the old value),
   * epsilon 1e-3, biased variance, channels last (axis -1; axis 1 is channels first).
   */
  static fromKeras<D extends Dtype = "float32">(numFeatures: number, options: {
    axis?: number; momentum?: number; epsilon?: number; center?: boolean; scale?: boolean; dtype?: D;
  } = {}): BatchNorm<D> {
    if (options === null || typeof options !== "object") throw new TypeError("fromKeras options must be an object");
    check.knownKeys("fromKeras options", options, ["axis", "momentum", "epsilon", "center", "scale", "dtype"]);
    const axis = options.axis ?? -1;
    if (axis !== -1 && axis !== 1) throw new RangeError(`axis must be -1 (channels last) or 1 (channels first), got ${check.shown(axis)}`);
    return new BatchNorm<D>(numFeatures, {
      eps: options.epsilon ?? 1e-3, momentum: options.momentum ?? 0.99, momentumConvention: "cs231n", runningVariance: "biased",
      center: options.center ?? true, scale: options.scale ?? true, layout: axis === -1 ? "NHWC" : "NCHW", dtype: options.dtype,
    });
  }

  /** Train mode (batch statistics, running statistics updated). */
  train(on = true): this {
    this.training = on;
    return this;
  }

  /** Eval mode (running statistics, unless trackRunningStats is false). */
  eval(): this {
    return this.train(false);
  }

  /**
   * Normalizes x, (N, C) row-major or, with shape [N, C, L] / [N, C, H, W], stored in the
   * layer's layout; returns a new array.
   */
  forward(x: ArrayOf<D>, shape?: readonly number[]): ArrayOf<D> {
    check.floatArray("x", x, this.dtype);
    const geo = geometry(x.length, this.numFeatures, shape, this.layout);
    if (!this.own || !sameShape(this.own.shape, geo.shape)) {
      this.own?.dispose();
      this.own = null;
      this.own = this.workspace(geo.shape);
    }
    this.own.x.set(x);
    return copyOf(this.own.forward());
  }

  /** Gradient with respect to the last forward's input; sets dgamma and dbeta. Returns a new array. */
  backward(dout: ArrayOf<D>): ArrayOf<D> {
    check.floatArray("dout", dout, this.dtype);
    const ws = this.own;
    if (!ws?.hasCache) throw new Error("BatchNorm.backward needs a forward first");
    if (dout.length !== ws.size) {
      throw new RangeError(`dout must have length ${ws.size} (shape [${ws.shape.join(", ")}], the shape of the last forward), got length ${dout.length}`);
    }
    ws.dout.set(dout);
    return copyOf(ws.backward());
  }

  /**
   * Buffers in the engine's memory for batches of one shape (a row count for (N, C), or
   * [N, C, L] / [N, C, H, W]): the zero-copy path.
   */
  workspace(shape: BatchShape): BatchNormWorkspace<D> {
    const full = typeof shape === "number" ? [check.positiveInteger("batchSize", shape), this.numFeatures] : shape;
    if (!Array.isArray(full)) throw new RangeError(`workspace needs a batch size or a shape, got ${JSON.stringify(shape)}`);
    full.forEach((v, i) => check.positiveInteger(`shape[${i}]`, v));
    const total = full.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(total)) throw new RangeError(`shape [${full.join(", ")}] is too large`);
    return new BatchNormWorkspace<D>(this, geometry(total, this.numFeatures, full, this.layout));
  }

  /** Frees the memory of the layer's own workspace (forward/backward allocate it again). */
  dispose(): void {
    this.own?.dispose();
    this.own = null;
  }

  /** The layer's state under PyTorch's names (default) or Keras' names, as plain arrays. */
  stateDict(format: "pytorch" | "keras" = "pytorch"): PyTorchState | KerasState {
    if (format !== "pytorch" && format !== "keras") throw new RangeError(`format must be 'pytorch' or 'keras', got ${JSON.stringify(format)}`);
    const names = STATE_NAMES[format];
    const state: Record<string, number[] | number> = {};
    if (this.useGamma) state[names.gamma] = Array.from(this.gamma);
    if (this.useBeta) state[names.beta] = Array.from(this.beta);
    if (this.trackRunningStats) {
      state[names.mean] = Array.from(this.runningMean);
      state[names.variance] = Array.from(this.runningVar);
      if (names.count) state[names.count] = this.numBatchesTracked;
    }
    return state;
  }

  /**
   * Loads a state in PyTorch's or Keras' names (told apart by its keys). Every key the layer
   * has must be present with numFeatures numbers, and no other key; on any error the layer
   * is left exactly as it was.
   */
  loadStateDict(state: PyTorchState | KerasState): this {
    if (state === null || typeof state !== "object" || Array.isArray(state)) throw new TypeError("state must be an object");
    const keras = "moving_mean" in state || "gamma" in state || "beta" in state || "moving_variance" in state;
    const names: StateNames = STATE_NAMES[keras ? "keras" : "pytorch"];
    const expected: string[] = [
      ...(this.useGamma ? [names.gamma] : []), ...(this.useBeta ? [names.beta] : []),
      ...(this.trackRunningStats ? [names.mean, names.variance, ...(names.count ? [names.count] : [])] : []),
    ];
    const record = state as Record<string, unknown>;
    const extra = Object.keys(record).filter((k) => !expected.includes(k));
    if (extra.length) throw new RangeError(`unexpected key(s) in state: ${extra.join(", ")} (expected ${expected.join(", ")})`);
    const missing = expected.filter((k) => !(k in record));
    if (missing.length) throw new RangeError(`missing key(s) in state: ${missing.join(", ")}`);
    const values = (key: string): Float64Array => {
      const v = record[key];
      const ok = (Array.isArray(v) || v instanceof Float32Array || v instanceof Float64Array) && (v as ArrayLike<unknown>).length === this.numFeatures;
      if (!ok) throw new RangeError(`state.${key} must be an array of ${this.numFeatures} numbers`);
      return Float64Array.from(v as ArrayLike<number>, (x, i) => {
        if (typeof x !== "number") throw new TypeError(`state.${key}[${i}] must be a number, got ${check.shown(x)}`);
        // A negative or NaN variance would turn the column into NaN in eval mode.
        if (key === names.variance && !(x >= 0)) throw new RangeError(`state.${key}[${i}] must be a variance ≥ 0, got ${x}`);
        return x;
      });
    };
    // Check everything before changing anything.
    const loaded: [FloatArray, Float64Array][] = [];
    if (this.useGamma) loaded.push([this.gamma, values(names.gamma)]);
    if (this.useBeta) loaded.push([this.beta, values(names.beta)]);
    let count = this.numBatchesTracked;
    if (this.trackRunningStats) {
      loaded.push([this.runningMean, values(names.mean)], [this.runningVar, values(names.variance)]);
      if (names.count) {
        const c = record[names.count];
        if (typeof c !== "number" || !Number.isInteger(c) || c < 0) throw new RangeError(`state.${names.count} must be a whole number ≥ 0, got ${check.shown(c)}`);
        count = c;
      }
    }
    for (const [target, source] of loaded) target.set(source);
    this.numBatchesTracked = count;
    return this;
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

  /** @internal */
  rule(): RunningStatsRule {
    return runningStatsRule(
      { momentum: this.momentum, momentumConvention: this.momentumConvention, runningVariance: this.runningVariance },
      "layer.", DEFAULT_MOMENTUM,
    );
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

const freeOnCollect = new FinalizationRegistry<{ engine: Engine; base: number }>(({ engine, base }) => engine.heap.free(base));

/**
 * The zero-copy path: x, out, dout and dx of one batch shape live in the engine's memory.
 * Write the batch into `ws.x`, call forward(), read `ws.out`; write `ws.dout`, call
 * backward(), read `ws.dx` (and layer.dgamma / layer.dbeta). Nothing is copied but O(C)
 * parameters.
 *
 * Lifetime rules:
 * - The getters x/out/dout/dx return a view on the memory as it is now. When any allocation
 *   grows the memory (a larger batch, another workspace), views taken before are detached by
 *   the JavaScript engine and read as empty; take the view from the getter again. Passing a
 *   detached view to any function is refused with an error.
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
  private readonly layer: BatchNorm<D>;
  private readonly geo: Geometry;
  private readonly plan;
  private base: number;
  private state: "empty" | "train" | "frozen" = "empty";
  private views: Record<string, FloatArray> = {};
  private viewsOf: ArrayBuffer | null = null;

  /** @internal use layer.workspace(shape) */
  constructor(layer: BatchNorm<D>, geo: Geometry) {
    this.layer = layer;
    this.geo = geo;
    this.shape = geo.shape;
    this.batchSize = geo.shape[0];
    const d = layer.numFeatures;
    const size = (this.size = geo.n * geo.S * d);
    const t = layer.dtype;
    this.plan = layout({
      x: [t, size], out: [t, size], dout: [t, size], dx: [t, size],
      gamma: [t, d], beta: [t, d], runMean: [t, d], runVar: [t, d], mean: [t, d], meanLo: [t, d],
      variance: [t, d], invStd: [t, d], dgamma: [t, d], dbeta: [t, d],
      work: ["float64", Math.ceil(layer.engine.kernels.workBytes(t, d) / 8)],
    });
    this.base = layer.engine.heap.alloc(this.plan.bytes);
    freeOnCollect.register(this, { engine: layer.engine, base: this.base }, this);
  }

  /** The batch input, in the layer's layout. */
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
  /** Mean, variance and 1/sqrt(var + eps) the last forward normalized with. */
  get mean(): ArrayOf<D> {
    return this.view("mean", false);
  }
  get variance(): ArrayOf<D> {
    return this.view("variance", false);
  }
  get invStd(): ArrayOf<D> {
    return this.view("invStd", false);
  }

  /** Whether a forward has run, so that backward() can. */
  get hasCache(): boolean {
    return this.state !== "empty";
  }

  /** Forward in the layer's mode (layer.training); returns the live view `out`. */
  forward(): ArrayOf<D> {
    const { layer, geo } = this;
    const state = this.checkedLayerState();
    const eps = check.eps(layer.eps, "layer.eps");
    const rule = layer.rule();
    const { kernels } = layer.engine;
    const p = (key: keyof typeof this.plan.offsets) => this.base + this.plan.offsets[key];
    const d = layer.numFeatures;
    const { n, S } = geo;
    this.view("gamma", false).set(state.gamma);
    this.view("beta", false).set(state.beta);
    const gamma = layer.useGamma ? p("gamma") : 0;
    const beta = layer.useBeta ? p("beta") : 0;
    if (layer.training || !layer.trackRunningStats) {
      const update = layer.training && layer.trackRunningStats;
      const step = update ? stepFactors(rule, layer.numBatchesTracked + 1, geo.count, geo.shape) : { momentum: 1, runVarScale: 1 };
      this.view("runMean", false).set(state.runningMean);
      this.view("runVar", false).set(state.runningVar);
      kernels.forwardTrain(
        layer.dtype, p("x"), n, d, S, gamma, beta, eps, step.momentum, step.runVarScale,
        update ? p("runMean") : 0, update ? p("runVar") : 0, p("out"),
        p("mean"), p("meanLo"), p("variance"), p("invStd"), p("work"),
      );
      if (update) {
        state.runningMean.set(this.view("runMean", false));
        state.runningVar.set(this.view("runVar", false));
        layer.numBatchesTracked++;
      }
      this.state = "train";
    } else {
      this.view("runMean", false).set(state.runningMean);
      this.view("runVar", false).set(state.runningVar);
      // With the frozen statistics for an eval-mode backward: invStd from the kernel.
      kernels.forwardTest(layer.dtype, p("x"), n, d, S, gamma, beta, eps, p("runMean"), p("runVar"), p("out"), p("invStd"), p("work"));
      this.view("mean", false).set(state.runningMean);
      this.view("meanLo", false).fill(0);
      this.view("variance", false).set(state.runningVar);
      this.state = "frozen";
    }
    return this.out;
  }

  /**
   * Backward of the last forward; writes dx and the layer's dgamma/dbeta. After a train-mode
   * forward, the batch statistics depend on x (compact form by default); after an eval-mode
   * forward, the running statistics are constants (fine-tuning with frozen statistics):
   * dx = dout·gamma/sqrt(runningVar + eps). Returns the live view `dx`.
   */
  backward(options?: { form?: "compact" | "graph" }): ArrayOf<D> {
    const { layer, geo } = this;
    this.checkAlive();
    const form = options === undefined ? "compact" : formOf(options);
    if (this.state === "empty") throw new Error("BatchNormWorkspace.backward needs a forward() first");
    const d = layer.numFeatures;
    const dgamma = check.floatArrayOfLength("layer.dgamma", layer.dgamma, layer.dtype, d, "numFeatures");
    const dbeta = check.floatArrayOfLength("layer.dbeta", layer.dbeta, layer.dtype, d, "numFeatures");
    const p = (key: keyof typeof this.plan.offsets) => this.base + this.plan.offsets[key];
    const kernelForm = this.state === "frozen" ? EVAL_FORM : form === "graph" ? GRAPH_FORM : COMPACT_FORM;
    layer.engine.kernels.backward(
      layer.dtype, kernelForm, p("dout"), p("x"), geo.n, d, geo.S,
      layer.useGamma ? p("gamma") : 0, p("mean"), p("meanLo"), p("invStd"), p("dx"), p("dgamma"), p("dbeta"), p("work"),
    );
    if (layer.useGamma) dgamma.set(this.view("dgamma", false));
    if (layer.useBeta) dbeta.set(this.view("dbeta", false));
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

  private view(key: keyof typeof this.plan.offsets, data: boolean): ArrayOf<D> {
    this.checkAlive();
    const { heap } = this.layer.engine;
    if (this.viewsOf !== heap.buffer) {
      this.views = {};
      this.viewsOf = heap.buffer;
    }
    const length = data ? this.size : this.layer.numFeatures;
    return (this.views[key] ??= heap.view(this.layer.dtype, this.base + this.plan.offsets[key], length)) as ArrayOf<D>;
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
