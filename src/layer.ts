// The BatchNorm layer: parameters, running statistics, train/eval mode and the conventions
// of other frameworks. Its zero-copy path for training loops is in workspace.ts.
//
// Parameter and gradient arrays (gamma, beta, dgamma, dbeta, runningMean, runningVar) are
// ordinary typed arrays that the layer owns and updates in place, so an optimizer can hold
// references to them. They are copied into the engine's memory on each call (O(C), small
// next to the data).
import { type ArrayOf, type Dtype, type FloatArray, arrayType, copyInto, copyOf, unfilled } from "./dtype.js";
import { rememberedPlan } from "./block.js";
import { type Activation, BACKWARD_RELU_STEP, BACKWARD_STEP, CHECKSUM_WORDS, EVAL_FORM, TEST_STEP } from "./kernels.js";
import {
  type KerasState, type PyTorchState, type RunningStatsOptions, type RunningStatsRule, checkBatchCount, kerasPreset, loadState, pytorchPreset,
  runningStatsRule, stateOf, stepFactors,
} from "./conventions.js";
import { type Geometry, type Layout, checkLayout, geometry } from "./shape.js";
import { type ForwardStep, runBackward, runForward, savedRows } from "./step.js";
import * as check from "./validate.js";
import { type Engine, engine } from "./wasm.js";
import { BatchNormWorkspace, type WorkspaceLayer } from "./workspace.js";
import { DEFAULT_EPS, DEFAULT_MOMENTUM } from "./functional.js";

/** Options of new BatchNorm(numFeatures, options); any key not declared here is refused. */
export interface BatchNormOptions<D extends Dtype = Dtype> extends RunningStatsOptions {
  /** default 1e-5 */
  eps?: number;
  /** Learnable gamma and beta (default true); false: gamma = 1, beta = 0, no gradients. */
  affine?: boolean;
  /** Keras' names for the two halves of affine: scale (gamma) and center (beta). */
  scale?: boolean;
  /** Learn beta (Keras' center); default: affine. */
  center?: boolean;
  /** Keep running statistics (default true); false: batch statistics in eval mode too. */
  trackRunningStats?: boolean;
  /** How (N, C, L) and (N, C, H, W) inputs are stored: 'NCHW' (default) or 'NHWC'. */
  layout?: Layout;
  /** default 'float32'; sets the type of every array of the layer (ArrayOf<D>). */
  dtype?: D;
  /**
   * 'relu': the layer is BatchNorm followed by ReLU, fused (out = max(0, BN(x)) in train and
   * eval mode, the backward masked in its own sweeps; see docs/fusion.md). Default 'none'.
   */
  activation?: Activation;
}

/** Every key of BatchNormOptions: any other is refused (see check.knownKeys). */
const OPTION_KEYS = [
  "eps", "momentum", "momentumConvention", "runningVariance", "affine", "scale", "center", "trackRunningStats", "layout", "dtype", "activation",
] as const satisfies readonly (keyof BatchNormOptions)[];


/** A batch: the data and, for (N, C, L) or (N, C, H, W) data, its logical shape. */
type BatchShape = number | readonly number[];

/** Options of layer.forward(x, options): the logical shape, and an array to write into. */
export interface LayerForwardOptions<A extends FloatArray = FloatArray> {
  /** The logical shape [N, C], [N, C, L] or [N, C, H, W], whatever the layout; absent: x is (N, C). */
  shape?: readonly number[];
  /** Where the output goes: the length of x. */
  out?: A;
}

/** forward's second argument: a shape (as before) or the options. */
function forwardOptions<A extends FloatArray>(value: readonly number[] | LayerForwardOptions<A> | undefined): LayerForwardOptions<A> {
  if (value === undefined || Array.isArray(value)) return { shape: value as readonly number[] | undefined };
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value)) {
    throw new TypeError(`forward's second argument must be a shape or { shape, out }, got ${check.shown(value)}`);
  }
  check.knownKeys("forward options", value, ["shape", "out"]);
  return value as LayerForwardOptions<A>;
}

/** What an eval-mode forward keeps for an eval-mode backward (the statistics as constants). */
interface EvalForward {
  geo: Geometry;
  x: FloatArray;
  saved: FloatArray;
  checksum: Uint32Array;
}

const evalPlan = rememberedPlan(["x", "out", "gamma", "beta", "runMean", "runVar", "invStd", "checksum"], [TEST_STEP]);
const evalBackwardPlan = rememberedPlan(["dout", "x", "dx", "gamma", "mean", "meanLo", "invStd", "dgamma", "dbeta", "checksum"], [BACKWARD_STEP]);
const evalBackwardReluPlan = rememberedPlan(["dout", "x", "dx", "gamma", "beta", "mean", "meanLo", "invStd", "dgamma", "dbeta", "checksum"], [BACKWARD_RELU_STEP]);

// No `implements WorkspaceLayer<D>`: the members it names are internal, stripped from the
// published types, where the clause would then fail a user's type check. workspace() passes
// `this` as a WorkspaceLayer, which checks the same structurally.
/** A batch normalization layer (PyTorch's BatchNorm1d/2d, Keras' BatchNormalization): its parameters, running statistics and train/eval mode, with forward(), backward() and a zero-copy workspace(). Every array of the layer is of its dtype (D). */
export class BatchNorm<D extends Dtype = "float32"> {
  /** C, the number of features (channels): the length of gamma, beta and the running statistics. */
  readonly numFeatures: number;
  /** The layer's element type: 'float32' (default) or 'float64'. */
  readonly dtype: D;
  /** Added to the variance; default 1e-5. */
  eps: number;
  /** See RunningStatsOptions; null is the cumulative average. */
  momentum: number | null;
  /** How momentum moves the running statistics: 'cs231n' (running = momentum·running + (1 − momentum)·batch) or 'pytorch' (the other way round). */
  readonly momentumConvention: "cs231n" | "pytorch";
  /** The variance the running statistics track: 'biased' (CS231n, Keras) or 'unbiased' (PyTorch). */
  readonly runningVariance: "biased" | "unbiased";
  /** Whether gamma is learned (affine / scale); false: gamma stays 1. */
  readonly useGamma: boolean;
  /** Whether beta is learned (affine / center); false: beta stays 0. */
  readonly useBeta: boolean;
  /** Whether running statistics are kept; false: eval mode normalizes with the batch statistics too. */
  readonly trackRunningStats: boolean;
  /** How (N, C, L) and (N, C, H, W) inputs are stored: 'NCHW' or 'NHWC'. */
  readonly layout: Layout;
  /** The activation fused after the normalization: 'relu' or 'none'. */
  readonly activation: Activation;
  /** true after train(), false after eval(). */
  training = true;
  /** Train-mode forwards since creation (or as loaded); drives momentum = null. */
  numBatchesTracked = 0;
  /** The scale, one value per feature; starts as ones. */
  gamma: ArrayOf<D>;
  /** The shift, one value per feature; starts as zeros. */
  beta: ArrayOf<D>;
  /** The running mean, one value per feature; starts as zeros. */
  runningMean: ArrayOf<D>;
  /** The running variance, one value per feature; starts as ones. */
  runningVar: ArrayOf<D>;
  /** Gradients of the last backward, overwritten in place by each backward. */
  dgamma: ArrayOf<D>;
  /** The gradient with respect to beta of the last backward. */
  dbeta: ArrayOf<D>;
  /** The engine (backend) this layer's buffers live in: the active one when it was created. */
  readonly engine: Engine;
  private own: BatchNormWorkspace<D> | null = null;
  /** What the next backward differentiates: the own workspace (train mode) or an eval-mode forward. */
  private last: BatchNormWorkspace<D> | EvalForward | null = null;
  private evalSaved: FloatArray | null = null;
  private evalChecksum: Uint32Array | null = null;

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
    this.activation = check.activation(options.activation, "options.activation");
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
    const { numFeatures, options: converted } = pytorchPreset(options);
    return new BatchNorm<D>(numFeatures, converted as BatchNormOptions<D>);
  }

  /**
   * Keras' BatchNormalization, spelled as in Keras: momentum 0.99 (weight of the old value),
   * epsilon 1e-3, biased variance, channels last (axis -1; axis 1 is channels first).
   */
  static fromKeras<D extends Dtype = "float32">(numFeatures: number, options: {
    axis?: number; momentum?: number; epsilon?: number; center?: boolean; scale?: boolean; dtype?: D;
  } = {}): BatchNorm<D> {
    return new BatchNorm<D>(numFeatures, kerasPreset(options) as BatchNormOptions<D>);
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
   * layer's layout; returns a new array, or `options.out` filled. A refused call changes
   * nothing (not the last forward's cache either). In train mode x is copied into the layer's
   * own workspace; in eval mode a large batch goes through in parts, and the layer refers to
   * x for an eval-mode backward (which refuses an x changed since).
   */
  forward(x: ArrayOf<D>, shapeOrOptions?: readonly number[] | LayerForwardOptions<ArrayOf<D>>): ArrayOf<D> {
    // 1. Validate: the input, then the layer's state and the step it asks for.
    check.floatArray("x", x, this.dtype, "this layer");
    const { shape, out: given } = forwardOptions(shapeOrOptions);
    const geo = geometry(x.length, this.numFeatures, shape, this.layout);
    const step = this.forwardStep(geo);
    const params = { gamma: this.gamma, beta: this.beta, "layer.runningMean": this.runningMean, "layer.runningVar": this.runningVar };
    // Train mode copies x in before anything is written: out may be x, or overlap it.
    const batch = step.statistics === "batch";
    const out = (given ? check.output("options.out", given, this.dtype, x.length, batch ? params : { x, ...params }, ["x"]) : null) as ArrayOf<D> | null;
    const { heap } = this.engine;
    if (!batch) {
      const inEngine = heap.owns(x);
      const input = heap.pin(x);
      const result = out ?? (unfilled(this.dtype === "float64", x.length) as ArrayOf<D>);
      // Reused: only the last forward's are ever read.
      const saved = (this.evalSaved ??= new (arrayType(this.dtype))(savedRows(this.activation) * this.numFeatures));
      const checksum = (this.evalChecksum ??= new Uint32Array(CHECKSUM_WORDS));
      runForward(this.engine, step, { x, out: result, saved, checksum }, (rows) => evalPlan(this.engine, this.dtype, { n: rows, d: geo.d, S: geo.S }), null);
      // The engine reuses its memory: a view of it is copied, any other x referred to.
      this.last = { geo, x: inEngine ? copyOf(input()) : input(), saved, checksum };
      this.forwardDone(step);
      return result;
    }
    // 2. Reserve: this layer's workspace for the shape (x may be a view of the engine's memory).
    const input = heap.pin(x);
    const pinnedOut = out ? heap.pin(out) : null;
    const ws = this.ownWorkspace(geo);
    // 3–6. Copy in, run, copy out.
    ws.x.set(input());
    ws.run(step);
    this.last = ws;
    if (!pinnedOut) return copyOf(ws.out);
    const target = pinnedOut();
    copyInto(target, 0, ws.out, 0, ws.size);
    return target;
  }

  /**
   * Gradient with respect to the last forward's input; sets dgamma and dbeta. Returns a new
   * array, or `options.dx` filled (it may be dout itself).
   */
  backward(dout: ArrayOf<D>, options?: { dx?: ArrayOf<D> }): ArrayOf<D> {
    check.floatArray("dout", dout, this.dtype, "this layer");
    const last = this.last;
    if (!last) throw new Error("BatchNorm.backward needs a forward first");
    const size = last instanceof BatchNormWorkspace ? last.size : last.x.length;
    const shape = last instanceof BatchNormWorkspace ? last.shape : last.geo.shape;
    if (dout.length !== size) {
      throw new RangeError(`dout must have length ${size} (shape [${shape.join(", ")}], the shape of the last forward), got length ${dout.length}`);
    }
    if (options !== undefined && (options === null || typeof options !== "object")) throw new TypeError("backward options must be an object like { dx }");
    if (options) check.knownKeys("backward options", options, ["dx"]);
    const targets = this.gradientTargets();
    const layerArrays = { "layer.dgamma": targets.dgamma, "layer.dbeta": targets.dbeta, "layer.gamma": this.gamma };
    const given = options?.dx ? (check.output("options.dx", options.dx, this.dtype, size, layerArrays, []) as ArrayOf<D>) : null;
    if (!(last instanceof BatchNormWorkspace)) {
      // After an eval-mode forward: the statistics are constants.
      check.floatArray("x of the last forward", last.x, this.dtype, "this layer");
      const dx = given ?? (unfilled(this.dtype === "float64", size) as ArrayOf<D>);
      const relu = this.activation === "relu";
      runBackward(this.engine, { dtype: this.dtype, shape: last.geo, form: EVAL_FORM, activation: this.activation }, {
        dout, x: last.x, saved: last.saved, ...targets, dx, checksum: last.checksum,
      }, (relu ? evalBackwardReluPlan : evalBackwardPlan)(this.engine, this.dtype, last.geo), null);
      return dx;
    }
    const input = this.engine.heap.pin(dout);
    last.dout.set(input());
    const dx = last.backward();
    if (!given) return copyOf(dx);
    copyInto(given, 0, dx, 0, size);
    return given;
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

  /** The workspace forward/backward use: kept while the shape repeats; the old one freed only once a new one exists. */
  private ownWorkspace(geo: Geometry): BatchNormWorkspace<D> {
    if (this.own && sameShape(this.own.shape, geo.shape)) return this.own;
    const ws = new BatchNormWorkspace<D>(this, geo);
    this.own?.dispose();
    return (this.own = ws);
  }

  /** @internal The next forward's step, validated (WorkspaceLayer). */
  forwardStep(geo: Geometry): ForwardStep {
    const state = this.checkedState();
    const eps = check.eps(this.eps, "layer.eps");
    const rule = this.rule();
    const batch = this.training || !this.trackRunningStats;
    const update = this.training && this.trackRunningStats;
    if (batch) checkBatchCount(rule, geo.count, geo.shape);
    const factors = update ? stepFactors(rule, this.numBatchesTracked + 1, geo.count, geo.shape) : { momentum: 1, runVarScale: 1 };
    return {
      dtype: this.dtype, shape: geo, statistics: batch ? "batch" : "running", factors: { eps, ...factors }, update,
      params: { gamma: this.useGamma ? state.gamma : null, beta: this.useBeta ? state.beta : null, runMean: state.runningMean, runVar: state.runningVar },
      activation: this.activation,
    };
  }

  /** @internal (WorkspaceLayer) */
  forwardDone(step: ForwardStep): void {
    if (step.update) this.numBatchesTracked++;
  }

  /** @internal (WorkspaceLayer) */
  gradientTargets(): { dgamma: FloatArray | null; dbeta: FloatArray | null; hasGamma: boolean; hasBeta: boolean } {
    const d = this.numFeatures;
    const dgamma = check.floatArrayOfLength("layer.dgamma", this.dgamma, this.dtype, d, "numFeatures");
    const dbeta = check.floatArrayOfLength("layer.dbeta", this.dbeta, this.dtype, d, "numFeatures");
    return { dgamma: this.useGamma ? dgamma : null, dbeta: this.useBeta ? dbeta : null, hasGamma: this.useGamma, hasBeta: this.useBeta };
  }

  /** Frees the memory of the layer's own workspace (forward/backward allocate it again). */
  dispose(): void {
    this.own?.dispose();
    this.own = null;
    this.last = null;
  }

  /** The layer's state under PyTorch's names (default) or Keras' names, as plain arrays. */
  stateDict(format?: "pytorch"): PyTorchState;
  stateDict(format: "keras"): KerasState;
  stateDict(format: "pytorch" | "keras" = "pytorch"): PyTorchState | KerasState {
    return stateOf(this, format);
  }

  /**
   * Loads a state in PyTorch's or Keras' names (told apart by its keys). Every key the layer
   * has must be present with numFeatures numbers, and no other key; on any error the layer
   * is left exactly as it was.
   */
  loadStateDict(state: PyTorchState | KerasState): this {
    loadState(this, state);
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
