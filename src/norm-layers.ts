// The LayerNorm, GroupNorm and InstanceNorm layers (PyTorch's nn.LayerNorm, nn.GroupNorm,
// nn.InstanceNorm1d/2d), on the one group step of layernorm.ts and groupnorm.ts, with the
// BatchNorm layer's conventions (layer.ts): options checked against known keys, one dtype
// for every array, train()/eval(), parameters and gradients owned and overwritten in place,
// state dicts in PyTorch's names, the engine chosen at construction, and a refused call
// that changes nothing. InstanceNorm's eval mode with running statistics is the batch norm's
// test-mode step (per channel, step.ts), its backward the batch norm's with the statistics
// as constants. layer.workspace(shape) is the zero-copy path (norm-workspace.ts).
import { type ArrayOf, type Dtype, type FloatArray, arrayType, copyOf, unfilled } from "./dtype.js";
import { rememberedPlan } from "./block.js";
import type { PyTorchState } from "./conventions.js";
import { DEFAULT_EPS } from "./functional.js";
import type { GroupGeometry } from "./group-step.js";
import { groupGeometry } from "./groupnorm.js";
import { BACKWARD_STEP, CHECKSUM_WORDS, EVAL_FORM, TEST_STEP } from "./kernels.js";
import { type NormCache, normBackward, normForward, optionsOf } from "./layernorm.js";
import { type Geometry, type Layout, checkLayout, geometry } from "./shape.js";
import { runBackward, runForward, savedRows } from "./step.js";
import * as check from "./validate.js";
import { type Engine, engine } from "./wasm.js";
import { NormWorkspace } from "./norm-workspace.js";

/** Options of a norm layer's forward(x, options): the logical shape, and an array to write into. */
export interface NormLayerForwardOptions<A extends FloatArray = FloatArray> {
  /**
   * The logical shape of x: LayerNorm [...batch, ...normalizedShape]; GroupNorm and
   * InstanceNorm [N, C, L] or [N, C, H, W] (GroupNorm also [N, C]), whatever the layout.
   */
  shape?: readonly number[];
  /** Where the output goes: the length of x, sharing no memory with x or the layer's arrays. */
  out?: A;
}

/** Options of new LayerNorm(normalizedShape, options); any other key is refused. */
export interface LayerNormOptions<D extends Dtype = Dtype> {
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** Learnable gamma and beta (default true); false: none (PyTorch's None), no gradients. */
  elementwiseAffine?: boolean;
  /** Learn beta (default true); false: gamma only. Ignored without elementwiseAffine. */
  bias?: boolean;
  /** default 'float32'; sets the type of every array of the layer (ArrayOf<D>). */
  dtype?: D;
}

/** Options of new GroupNorm(numGroups, numChannels, options); any other key is refused. */
export interface GroupNormOptions<D extends Dtype = Dtype> {
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** Learnable per-channel gamma and beta (default true); false: none, no gradients. */
  affine?: boolean;
  /** How (N, C, L) and (N, C, H, W) inputs are stored: 'NCHW' (default) or 'NHWC' ('NCL', 'NLC'). */
  layout?: Layout;
  /** default 'float32'; sets the type of every array of the layer (ArrayOf<D>). */
  dtype?: D;
}

/** Options of new InstanceNorm(numFeatures, options); any other key is refused. */
export interface InstanceNormOptions<D extends Dtype = Dtype> {
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** The weight of the new statistics in the running ones (PyTorch's convention); default 0.1. */
  momentum?: number;
  /** Learnable per-channel gamma and beta; default false (PyTorch's). */
  affine?: boolean;
  /** Keep running statistics, which eval mode then normalizes with; default false (PyTorch's). */
  trackRunningStats?: boolean;
  /** How (N, C, L) and (N, C, H, W) inputs are stored: 'NCHW' (default) or 'NHWC' ('NCL', 'NLC'). */
  layout?: Layout;
  /** default 'float32'; sets the type of every array of the layer (ArrayOf<D>). */
  dtype?: D;
}

/** Numbers nested in arrays, as a PyTorch tensor's tolist() gives them (row-major). */
export type NestedNumbers = number | readonly NestedNumbers[];

/** A state for loadStateDict, in PyTorch's names: each array flat, nested (row-major) or typed. */
export interface NormLayerStateInput {
  /** gamma. */
  weight?: readonly NestedNumbers[] | FloatArray;
  /** beta. */
  bias?: readonly NestedNumbers[] | FloatArray;
  /** InstanceNorm's running mean. */
  running_mean?: readonly NestedNumbers[] | FloatArray;
  /** InstanceNorm's running (unbiased) variance. */
  running_var?: readonly NestedNumbers[] | FloatArray;
  /** InstanceNorm's count of train-mode batches (PyTorch's stays 0). */
  num_batches_tracked?: number;
}

/** What the next backward differentiates: a group-step forward, or InstanceNorm's eval with running statistics. */
type Forwarded =
  | { kind: "group"; cache: NormCache }
  | { kind: "running"; geo: Geometry; x: FloatArray; saved: FloatArray; checksum: Uint32Array };

const runningPlan = rememberedPlan(["x", "out", "gamma", "beta", "runMean", "runVar", "invStd", "checksum"], [TEST_STEP]);
const runningBackwardPlan = rememberedPlan(["dout", "x", "dx", "gamma", "mean", "meanLo", "invStd", "dgamma", "dbeta", "checksum"], [BACKWARD_STEP]);

/** The options object of a constructor, checked: an object with only `keys`. */
function layerOptions(name: string, options: unknown, keys: readonly string[]): Record<string, unknown> {
  if (options === null || typeof options !== "object" || Array.isArray(options) || ArrayBuffer.isView(options)) {
    throw new TypeError(`${name} options must be an object like { ${keys.join(", ")} }, got ${check.shown(options)}`);
  }
  check.knownKeys(`${name} options`, options, keys);
  return options as Record<string, unknown>;
}

function flag(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw new TypeError(`options.${name} must be true or false, got ${check.shown(value)}`);
  return value;
}

function dtypeOption(value: unknown): Dtype {
  const dtype = value ?? "float32";
  if (dtype !== "float32" && dtype !== "float64") throw new TypeError(`options.dtype must be 'float32' or 'float64', got ${check.shown(dtype)}`);
  return dtype;
}

/** eps of the options: absent is 1e-5, anything else (null too) must be a number ≥ 0. */
function epsOption(value: unknown): number {
  return check.eps(value === undefined ? DEFAULT_EPS : value, "options.eps");
}

/** forward's second argument: a shape or { shape, out }. */
function forwardOptions<A extends FloatArray>(value: unknown): NormLayerForwardOptions<A> {
  if (value === undefined || Array.isArray(value)) return { shape: value as readonly number[] | undefined };
  return optionsOf("forward options", value, ["shape", "out"]) as NormLayerForwardOptions<A>;
}

/** A workspace's shape: an array of positive integers of a safe total size. */
function shapeOf(shape: unknown): number[] {
  if (!Array.isArray(shape)) throw new RangeError(`workspace needs a shape, got ${check.shown(shape)}`);
  shape.forEach((v, i) => check.positiveInteger(`shape[${i}]`, v));
  const total = shape.reduce((a: number, b: number) => a * b, 1);
  if (!Number.isSafeInteger(total)) throw new RangeError(`shape [${shape.join(", ")}] is too large`);
  return shape;
}

/** The largest finite float32. */
const FLOAT32_MAX = 3.4028234663852886e38;

/** One array of a state dict: its key, the layer's array it loads into, and whether it is a variance. */
interface StateEntry {
  key: string;
  target: FloatArray;
  variance?: boolean;
}

/**
 * A state's values for `entries` (and num_batches_tracked when `count`), all checked before
 * any is written: the keys exactly, `length` finite numbers each (nested arrays row-major, as
 * a PyTorch tensor's tolist() gives), within the dtype's range, variances ≥ 0.
 */
function loadEntries(state: unknown, entries: StateEntry[], length: number, dtype: Dtype, count: { value: number } | null): void {
  if (state === null || typeof state !== "object" || Array.isArray(state) || ArrayBuffer.isView(state)) {
    throw new TypeError(`state must be an object like { ${[...entries.map((e) => e.key), ...(count ? ["num_batches_tracked"] : [])].join(", ")} }, got ${check.shown(state)}`);
  }
  const expected = [...entries.map((e) => e.key), ...(count ? ["num_batches_tracked"] : [])];
  const record = state as Record<string, unknown>;
  const extra = Object.keys(record).filter((k) => !expected.includes(k));
  if (extra.length) throw new RangeError(`unexpected key(s) in state: ${extra.join(", ")} (expected ${expected.join(", ") || "none"})`);
  const missing = expected.filter((k) => !(k in record));
  if (missing.length) throw new RangeError(`missing key(s) in state: ${missing.join(", ")}`);
  const loaded = entries.map(({ key, target, variance }) => {
    const v = record[key];
    if (!Array.isArray(v) && !(v instanceof Float32Array || v instanceof Float64Array)) {
      throw new TypeError(`state.${key} must be an array or a Float32Array/Float64Array of ${length} numbers, got ${check.shown(v)}`);
    }
    const flat: unknown[] = Array.isArray(v) ? v.flat(Infinity) : Array.from(v);
    if (flat.length !== length) throw new RangeError(`state.${key} must have ${length} values, got ${flat.length}`);
    const values = new Float64Array(length);
    flat.forEach((x, i) => {
      if (typeof x !== "number") throw new TypeError(`state.${key}[${i}] must be a number, got ${check.shown(x)}`);
      if (!Number.isFinite(x) || (dtype === "float32" && Math.abs(x) > FLOAT32_MAX)) {
        throw new RangeError(`state.${key}[${i}] must be a finite ${dtype} number, got ${x}`);
      }
      if (variance && x < 0) throw new RangeError(`state.${key}[${i}] must be a variance ≥ 0, got ${x}`);
      values[i] = x;
    });
    return [target, values] as const;
  });
  let tracked = count?.value ?? 0;
  if (count) {
    const c = record.num_batches_tracked;
    if (typeof c !== "number" || !Number.isInteger(c) || c < 0) throw new RangeError(`state.num_batches_tracked must be a whole number ≥ 0, got ${check.shown(c)}`);
    tracked = c;
  }
  for (const [target, values] of loaded) target.set(values);
  if (count) count.value = tracked;
}

/**
 * What the three layers share: dtype, eps, train/eval mode, the parameters and their
 * gradients, backward and the state dict's parameters. Not exported: use LayerNorm,
 * GroupNorm or InstanceNorm.
 */
abstract class NormLayerBase<D extends Dtype> {
  /** The layer's element type: 'float32' (default) or 'float64'. */
  readonly dtype: D;
  /** The length of gamma and beta: LayerNorm's D, GroupNorm's and InstanceNorm's C. */
  readonly numFeatures: number;
  /** Added to the variance; checked again at each forward. */
  eps: number;
  /** true after train(), false after eval(). */
  training = true;
  /** The scale (PyTorch's weight), starts as ones; null without affine parameters. */
  gamma: ArrayOf<D> | null;
  /** The shift (PyTorch's bias), starts as zeros; null without it. */
  beta: ArrayOf<D> | null;
  /** The gradient with respect to gamma of the last backward, overwritten in place; null without gamma. */
  dgamma: ArrayOf<D> | null;
  /** The gradient with respect to beta of the last backward, overwritten in place; null without beta. */
  dbeta: ArrayOf<D> | null;
  /** Whether the layer has (and learns) gamma. */
  readonly useGamma: boolean;
  /** Whether the layer has (and learns) beta. */
  readonly useBeta: boolean;
  /** The engine (backend) this layer runs on: the active one when it was created. */
  readonly engine: Engine;
  /** @internal For messages: "LayerNorm". */
  protected readonly kind: string;
  /** @internal What the next backward differentiates. */
  protected last: Forwarded | null = null;
  // The kernels take gamma and beta always: ones and zeros stand in for absent ones.
  private readonly ones: ArrayOf<D>;
  private readonly zeros: ArrayOf<D>;

  /** @internal */
  constructor(kind: string, dtype: D, eps: number, numFeatures: number, useGamma: boolean, useBeta: boolean) {
    this.kind = kind;
    this.dtype = dtype;
    this.eps = eps;
    this.numFeatures = numFeatures;
    this.useGamma = useGamma;
    this.useBeta = useBeta;
    const make = () => new (arrayType(dtype))(numFeatures) as ArrayOf<D>;
    this.gamma = useGamma ? (make().fill(1) as ArrayOf<D>) : null;
    this.beta = useBeta ? make() : null;
    this.dgamma = useGamma ? make() : null;
    this.dbeta = useBeta ? make() : null;
    this.ones = make().fill(1) as ArrayOf<D>;
    this.zeros = make();
    this.engine = engine();
  }

  /** Train mode (train(false) is eval mode). */
  train(on = true): this {
    if (typeof on !== "boolean") throw new TypeError(`train(on): on must be true or false, got ${check.shown(on)}`);
    this.training = on;
    return this;
  }

  /** Eval mode: for LayerNorm and GroupNorm the same computation; InstanceNorm's uses the running statistics if it tracks them. */
  eval(): this {
    return this.train(false);
  }

  /** @internal gamma and beta for the kernels, checked (a user may have replaced them), ones and zeros when absent. */
  protected params(): { gamma: FloatArray; beta: FloatArray } {
    const d = this.numFeatures;
    const shape = `numFeatures = ${d}`;
    return {
      gamma: this.useGamma ? check.floatArrayOfLength("layer.gamma", this.gamma, this.dtype, d, shape) : this.ones,
      beta: this.useBeta ? check.floatArrayOfLength("layer.beta", this.beta, this.dtype, d, shape) : this.zeros,
    };
  }

  /** @internal options.out checked against x and the layer's arrays. */
  protected output(given: unknown, x: FloatArray, others: Record<string, FloatArray | null> = {}): ArrayOf<D> | undefined {
    if (given === undefined) return undefined;
    return check.output("options.out", given, this.dtype, x.length, { x, "layer.gamma": this.gamma, "layer.beta": this.beta, ...others }, []) as ArrayOf<D>;
  }

  /** @internal The group step's forward; the cache becomes the last forward only once it has run. */
  protected groupForward(x: FloatArray, g: GroupGeometry, shape: readonly number[], out: FloatArray | undefined): { out: ArrayOf<D>; cache: NormCache } {
    const eps = check.eps(this.eps, "layer.eps");
    const { gamma, beta } = this.params();
    const result = normForward(x, gamma, beta, g, shape, eps, out, { gamma: this.useGamma, beta: this.useBeta }, this.engine);
    this.last = { kind: "group", cache: result.cache };
    return result as { out: ArrayOf<D>; cache: NormCache };
  }

  /**
   * Gradient with respect to the last forward's input; sets dgamma and dbeta (in place).
   * Returns a new array, or `options.dx` filled (it may be dout itself). The last forward
   * refers to its x: an x changed since is refused (ChangedInputError), nothing written.
   */
  backward(dout: ArrayOf<D>, options?: { dx?: ArrayOf<D> }): ArrayOf<D> {
    check.floatArray("dout", dout, this.dtype, "this layer");
    const last = this.last;
    if (!last) throw new Error(`${this.kind}.backward needs a forward first`);
    const size = last.kind === "group" ? last.cache.x.length : last.x.length;
    const shape = last.kind === "group" ? last.cache.shape : last.geo.shape;
    if (dout.length !== size) {
      throw new RangeError(`dout must have length ${size} (shape [${shape.join(", ")}], the shape of the last forward), got length ${dout.length}`);
    }
    const given = optionsOf("backward options", options, ["dx"]);
    const { dgamma, dbeta } = this.gradientTargets();
    const layerArrays = { "layer.dgamma": dgamma, "layer.dbeta": dbeta, "layer.gamma": this.gamma, "layer.beta": this.beta };
    const dx = given.dx === undefined ? undefined : check.output("options.dx", given.dx, this.dtype, size, layerArrays, []);
    if (last.kind === "group") {
      const outputs = { ...(dx ? { dx } : {}), ...(dgamma ? { dgamma } : {}), ...(dbeta ? { dbeta } : {}) };
      return normBackward(`${this.kind}.backward`, dout, last.cache, outputs, this.engine).dx as ArrayOf<D>;
    }
    // After an eval-mode forward with running statistics: those are constants.
    check.floatArray("x of the last forward", last.x, this.dtype, "this layer");
    const result = dx ?? unfilled(this.dtype === "float64", size);
    runBackward(this.engine, { dtype: this.dtype, shape: last.geo, form: EVAL_FORM, activation: "none" }, {
      dout, x: last.x, saved: last.saved, hasGamma: this.useGamma, hasBeta: this.useBeta, dx: result, dgamma, dbeta, checksum: last.checksum,
    }, runningBackwardPlan(this.engine, this.dtype, last.geo), null);
    return result as ArrayOf<D>;
  }

  /**
   * Buffers in the engine's memory for batches of one shape: the zero-copy path (see
   * NormWorkspace). The shape is what forward takes (LayerNorm: also a row count N).
   */
  workspace(shape: number | readonly number[]): NormWorkspace<D> {
    const { g, stated } = this.workspaceGeometry(shape);
    return new NormWorkspace<D>(this, g, stated);
  }

  /** @internal The kernels' geometry of a workspace's shape, checked. */
  protected abstract workspaceGeometry(shape: unknown): { g: GroupGeometry; stated: readonly number[] };

  /** @internal For NormWorkspace.forward: gamma, beta and eps, validated. */
  workspaceForward(): { gamma: FloatArray; beta: FloatArray; eps: number } {
    const eps = check.eps(this.eps, "layer.eps");
    return { ...this.params(), eps };
  }

  /** @internal For NormWorkspace.forward: running statistics to normalize with (InstanceNorm in eval mode), else null. */
  workspaceRunning(): { runningMean: FloatArray; runningVar: FloatArray } | null {
    return null;
  }

  /** @internal After a workspace's forward (InstanceNorm moves its running statistics). */
  workspaceForwardDone(_stats: { mean: FloatArray; meanLo: FloatArray; variance: FloatArray }, _g: GroupGeometry): void {}

  /** @internal For NormWorkspace.backward: layer.dgamma and layer.dbeta, validated (null when not learned). */
  gradientTargets(): { dgamma: FloatArray | null; dbeta: FloatArray | null } {
    const d = this.numFeatures;
    return {
      dgamma: this.useGamma ? check.floatArrayOfLength("layer.dgamma", this.dgamma, this.dtype, d, `numFeatures = ${d}`) : null,
      dbeta: this.useBeta ? check.floatArrayOfLength("layer.dbeta", this.dbeta, this.dtype, d, `numFeatures = ${d}`) : null,
    };
  }

  /** @internal The state dict's parameter entries. */
  protected paramEntries(): StateEntry[] {
    const { gamma, beta } = this.params();
    return [...(this.useGamma ? [{ key: "weight", target: gamma }] : []), ...(this.useBeta ? [{ key: "bias", target: beta }] : [])];
  }

  /** @internal weight and bias, as plain arrays, when the layer has them. */
  protected paramState(): PyTorchState {
    const state: PyTorchState = {};
    if (this.useGamma) state.weight = Array.from(this.params().gamma);
    if (this.useBeta) state.bias = Array.from(this.params().beta);
    return state;
  }
}

/**
 * Layer normalization (PyTorch's nn.LayerNorm, CS231n's layernorm_forward): each sample
 * normalized over its last dimensions, normalizedShape (D values in all), with its own mean
 * and biased variance; gamma and beta of D values. The same in train and eval mode.
 */
export class LayerNorm<D extends Dtype = "float32"> extends NormLayerBase<D> {
  /** The dimensions each sample is normalized over (PyTorch's normalized_shape). */
  readonly normalizedShape: readonly number[];
  /** Whether the layer has gamma (and beta, unless bias is false). */
  readonly elementwiseAffine: boolean;
  /** Whether the layer has beta. */
  readonly bias: boolean;

  /** normalizedShape: a number D, or dimensions whose product D is the length of gamma and beta. */
  constructor(normalizedShape: number | readonly number[], options: LayerNormOptions<D> = {}) {
    const dims = typeof normalizedShape === "number" ? [normalizedShape] : normalizedShape;
    if (!Array.isArray(dims) || dims.length === 0) {
      throw new TypeError(`normalizedShape must be a positive integer or a non-empty array of them, got ${check.shown(normalizedShape)}`);
    }
    dims.forEach((v, i) => check.positiveInteger(`normalizedShape[${i}]`, v));
    const size = dims.reduce((a: number, b: number) => a * b, 1);
    if (!Number.isSafeInteger(size)) throw new RangeError(`normalizedShape [${dims.join(", ")}] is too large`);
    const o = layerOptions("LayerNorm", options, ["eps", "elementwiseAffine", "bias", "dtype"]);
    const affine = flag("elementwiseAffine", o.elementwiseAffine, true);
    const bias = affine && flag("bias", o.bias, true);
    super("LayerNorm", dtypeOption(o.dtype) as D, epsOption(o.eps), size, affine, bias);
    this.normalizedShape = Object.freeze([...dims]);
    this.elementwiseAffine = affine;
    this.bias = bias;
  }

  /**
   * Normalizes x: N·D values, N inferred, or of `shape` [...batch, ...normalizedShape].
   * Returns a new array, or `options.out` filled. The layer refers to x for the backward.
   */
  forward(x: ArrayOf<D>, shapeOrOptions?: readonly number[] | NormLayerForwardOptions<ArrayOf<D>>): ArrayOf<D> {
    check.floatArray("x", x, this.dtype, "this layer");
    const { shape, out } = forwardOptions<ArrayOf<D>>(shapeOrOptions);
    const D = this.numFeatures;
    const ns = this.normalizedShape;
    let n: number;
    let stated: number[];
    if (shape === undefined) {
      n = check.rowsOf(x.length, D);
      stated = [n, ...ns];
    } else {
      if (!Array.isArray(shape)) throw new RangeError(`shape must be an array [...batch, ${ns.join(", ")}], got ${check.shown(shape)}`);
      shape.forEach((v, i) => check.positiveInteger(`shape[${i}]`, v));
      const tail = shape.slice(shape.length - ns.length);
      if (shape.length < ns.length || tail.some((v, i) => v !== ns[i])) {
        throw new RangeError(`shape [${shape.join(", ")}] must end with normalizedShape [${ns.join(", ")}]`);
      }
      n = shape.slice(0, shape.length - ns.length).reduce((a: number, b: number) => a * b, 1);
      if (n * D !== x.length) throw new RangeError(`x must have ${n * D} values for shape [${shape.join(", ")}], got length ${x.length}`);
      stated = [...shape];
    }
    const target = this.output(out, x);
    return this.groupForward(x, { n, G: 1, K: D, S: 1, channelsLast: false }, stated, target).out;
  }

  /** @internal A row count N, or [...batch, ...normalizedShape]. */
  protected workspaceGeometry(shape: unknown): { g: GroupGeometry; stated: readonly number[] } {
    const ns = this.normalizedShape;
    const stated = typeof shape === "number" ? [check.positiveInteger("batchSize", shape), ...ns] : shapeOf(shape);
    const tail = stated.slice(stated.length - ns.length);
    if (stated.length < ns.length || tail.some((v, i) => v !== ns[i])) {
      throw new RangeError(`shape [${stated.join(", ")}] must end with normalizedShape [${ns.join(", ")}]`);
    }
    const n = stated.slice(0, stated.length - ns.length).reduce((a, b) => a * b, 1);
    return { g: { n, G: 1, K: this.numFeatures, S: 1, channelsLast: false }, stated };
  }

  /** The state under PyTorch's names: { weight, bias } when the layer has them (flat, D values each). */
  stateDict(): PyTorchState {
    return this.paramState();
  }

  /** Loads { weight, bias } (exactly the keys stateDict() has); on any error the layer is left as it was. */
  loadStateDict(state: NormLayerStateInput): this {
    loadEntries(state, this.paramEntries(), this.numFeatures, this.dtype, null);
    return this;
  }
}

/**
 * Group normalization (PyTorch's nn.GroupNorm, CS231n's spatial_groupnorm_forward): each
 * sample's C channels in numGroups groups of C/G, statistics per (sample, group) over the
 * group's channels and positions; gamma and beta per channel.
 */
export class GroupNorm<D extends Dtype = "float32"> extends NormLayerBase<D> {
  /** G: it divides numChannels. */
  readonly numGroups: number;
  /** C, the length of gamma and beta. */
  readonly numChannels: number;
  /** Whether the layer has gamma and beta. */
  readonly affine: boolean;
  /** How (N, C, L) and (N, C, H, W) inputs are stored. */
  readonly layout: Layout;

  /** numGroups must divide numChannels (a RangeError otherwise). */
  constructor(numGroups: number, numChannels: number, options: GroupNormOptions<D> = {}) {
    const G = check.positiveInteger("numGroups", numGroups);
    const C = check.positiveInteger("numChannels", numChannels);
    if (C % G !== 0) throw new RangeError(`numGroups = ${G} must divide numChannels = ${C} (C/G channels per group)`);
    const o = layerOptions("GroupNorm", options, ["eps", "affine", "layout", "dtype"]);
    const affine = flag("affine", o.affine, true);
    const layout = checkLayout(o.layout ?? "NCHW", "options.layout");
    super("GroupNorm", dtypeOption(o.dtype) as D, epsOption(o.eps), C, affine, affine);
    this.numGroups = G;
    this.numChannels = C;
    this.affine = affine;
    this.layout = layout;
  }

  /**
   * Normalizes x of logical `shape` [N, C, L] or [N, C, H, W] stored in the layer's layout,
   * or [N, C] (also without a shape: N inferred). Returns a new array, or `options.out` filled.
   */
  forward(x: ArrayOf<D>, shapeOrOptions?: readonly number[] | NormLayerForwardOptions<ArrayOf<D>>): ArrayOf<D> {
    check.floatArray("x", x, this.dtype, "this layer");
    const { shape, out } = forwardOptions<ArrayOf<D>>(shapeOrOptions);
    const C = this.numChannels;
    const stated = shape ?? [check.rowsOf(x.length, C), C];
    const g = groupGeometry(x.length, C, this.numGroups, stated, this.layout, "numGroups");
    const target = this.output(out, x);
    return this.groupForward(x, g, stated, target).out;
  }

  /** @internal [N, C], [N, C, L] or [N, C, H, W], stored in the layer's layout. */
  protected workspaceGeometry(shape: unknown): { g: GroupGeometry; stated: readonly number[] } {
    const stated = shapeOf(shape);
    const size = stated.reduce((a, b) => a * b, 1);
    return { g: groupGeometry(size, this.numChannels, this.numGroups, stated, this.layout, "numGroups"), stated };
  }

  /** The state under PyTorch's names: { weight, bias } with affine, else {}. */
  stateDict(): PyTorchState {
    return this.paramState();
  }

  /** Loads { weight, bias } (exactly the keys stateDict() has); on any error the layer is left as it was. */
  loadStateDict(state: NormLayerStateInput): this {
    loadEntries(state, this.paramEntries(), this.numFeatures, this.dtype, null);
    return this;
  }
}

/**
 * Instance normalization (PyTorch's nn.InstanceNorm1d/2d): GroupNorm with one group per
 * channel, and optionally PyTorch's running statistics. With trackRunningStats, a train-mode
 * forward moves them, running = (1 − momentum)·running + momentum·stat, stat the mean over
 * the N instances of each channel's mean and of its unbiased variance var·S/(S − 1); eval
 * mode then normalizes with them, per channel, as a batch norm in test mode does.
 */
export class InstanceNorm<D extends Dtype = "float32"> extends NormLayerBase<D> {
  /** The weight of the new statistics in the running ones; checked again at each forward. */
  momentum: number;
  /** Whether the layer has gamma and beta. */
  readonly affine: boolean;
  /** Whether running statistics are kept (and eval mode uses them). */
  readonly trackRunningStats: boolean;
  /** How (N, C, L) and (N, C, H, W) inputs are stored. */
  readonly layout: Layout;
  /** The running mean per channel, starts as zeros; null without trackRunningStats. */
  runningMean: ArrayOf<D> | null;
  /** The running (unbiased) variance per channel, starts as ones; null without trackRunningStats. */
  runningVar: ArrayOf<D> | null;
  /** Kept in the state dict as PyTorch keeps it; PyTorch's InstanceNorm never counts, nor does this layer. */
  numBatchesTracked = 0;

  /** numFeatures: C, the number of channels. */
  constructor(numFeatures: number, options: InstanceNormOptions<D> = {}) {
    const C = check.positiveInteger("numFeatures", numFeatures);
    const o = layerOptions("InstanceNorm", options, ["eps", "momentum", "affine", "trackRunningStats", "layout", "dtype"]);
    const affine = flag("affine", o.affine, false);
    const track = flag("trackRunningStats", o.trackRunningStats, false);
    // null is no default here: PyTorch's InstanceNorm has no cumulative average.
    const momentum = check.momentum(o.momentum === undefined ? 0.1 : o.momentum, "options.momentum");
    const layout = checkLayout(o.layout ?? "NCHW", "options.layout");
    const dtype = dtypeOption(o.dtype) as D;
    super("InstanceNorm", dtype, epsOption(o.eps), C, affine, affine);
    this.affine = affine;
    this.trackRunningStats = track;
    this.momentum = momentum;
    this.layout = layout;
    this.runningMean = track ? (new (arrayType(dtype))(C) as ArrayOf<D>) : null;
    this.runningVar = track ? (new (arrayType(dtype))(C).fill(1) as ArrayOf<D>) : null;
  }

  /** @internal runningMean and runningVar, checked (a user may have replaced them). */
  private running(): { runningMean: FloatArray; runningVar: FloatArray } {
    const C = this.numFeatures;
    const shape = `numFeatures = ${C}`;
    return {
      runningMean: check.floatArrayOfLength("layer.runningMean", this.runningMean, this.dtype, C, shape),
      runningVar: check.floatArrayOfLength("layer.runningVar", this.runningVar, this.dtype, C, shape),
    };
  }

  /**
   * Normalizes x of logical `shape` [N, C, L] or [N, C, H, W] stored in the layer's layout.
   * Train mode (and eval mode without running statistics) normalizes each instance with
   * its own statistics, and needs more than one position (PyTorch's rule). Returns a new
   * array, or `options.out` filled. The layer refers to x for the backward.
   */
  forward(x: ArrayOf<D>, shapeOrOptions: readonly number[] | NormLayerForwardOptions<ArrayOf<D>>): ArrayOf<D> {
    check.floatArray("x", x, this.dtype, "this layer");
    const { shape, out } = forwardOptions<ArrayOf<D>>(shapeOrOptions);
    const C = this.numFeatures;
    if (!Array.isArray(shape) || (shape.length !== 3 && shape.length !== 4)) {
      throw new RangeError(`InstanceNorm.forward needs the shape [N, C, L] or [N, C, H, W] of x, got ${check.shown(shape)}`);
    }
    const batch = this.training || !this.trackRunningStats;
    const update = this.training && this.trackRunningStats;
    const running = this.trackRunningStats ? this.running() : null;
    const target = this.output(out, x, running ? { "layer.runningMean": running.runningMean, "layer.runningVar": running.runningVar } : {});
    if (batch) {
      const g = groupGeometry(x.length, C, C, shape, this.layout, "numFeatures");
      if (g.S === 1) throw new RangeError(`Expected more than 1 spatial element when training, got input size [${shape.join(", ")}]`);
      const momentum = update ? check.momentum(this.momentum, "layer.momentum") : 0;
      const result = this.groupForward(x, g, shape, target);
      if (update) this.updateRunning(result.cache, g.n, running!, momentum, g.S);
      return result.out;
    }
    const eps = check.eps(this.eps, "layer.eps");
    const { gamma, beta } = this.params();
    const geo = geometry(x.length, C, shape, this.layout);
    const { heap } = this.engine;
    const inEngine = x.buffer === heap.buffer;
    const input = heap.pin(x);
    const result = target ?? (unfilled(this.dtype === "float64", x.length) as ArrayOf<D>);
    const saved = new (arrayType(this.dtype))(savedRows("none") * C);
    const checksum = new Uint32Array(CHECKSUM_WORDS);
    runForward(this.engine, {
      dtype: this.dtype, shape: geo, statistics: "running", factors: { eps, momentum: 1, runVarScale: 1 }, update: false,
      params: { gamma: this.affine ? gamma : null, beta: this.affine ? beta : null, runMean: running!.runningMean, runVar: running!.runningVar },
      activation: "none",
    }, { x, out: result, saved, checksum }, (rows) => runningPlan(this.engine, this.dtype, { n: rows, d: geo.d, S: geo.S }), null);
    // The engine reuses its memory: a view of it is copied, any other x referred to.
    this.last = { kind: "running", geo, x: inEngine ? copyOf(input()) : input(), saved, checksum };
    return result;
  }

  /** @internal [N, C, L] or [N, C, H, W] with more than one position, stored in the layer's layout. */
  protected workspaceGeometry(shape: unknown): { g: GroupGeometry; stated: readonly number[] } {
    const stated = shapeOf(shape);
    if (stated.length !== 3 && stated.length !== 4) throw new RangeError(`InstanceNorm.workspace needs the shape [N, C, L] or [N, C, H, W], got [${stated.join(", ")}]`);
    const size = stated.reduce((a, b) => a * b, 1);
    const g = groupGeometry(size, this.numFeatures, this.numFeatures, stated, this.layout, "numFeatures");
    if (g.S === 1) throw new RangeError(`Expected more than 1 spatial element when training, got input size [${stated.join(", ")}]`);
    return { g, stated };
  }

  /** @internal Eval mode with running statistics: those, validated. */
  workspaceRunning(): { runningMean: FloatArray; runningVar: FloatArray } | null {
    return !this.training && this.trackRunningStats ? this.running() : null;
  }

  /** @internal Checks momentum and the running statistics when a train forward moves them. */
  workspaceForward(): { gamma: FloatArray; beta: FloatArray; eps: number } {
    if (this.training && this.trackRunningStats) {
      check.momentum(this.momentum, "layer.momentum");
      this.running();
    }
    return super.workspaceForward();
  }

  /** @internal Train mode with running statistics: they move, as after layer.forward. */
  workspaceForwardDone(stats: { mean: FloatArray; meanLo: FloatArray; variance: FloatArray }, g: GroupGeometry): void {
    if (this.training && this.trackRunningStats) this.updateRunning(stats, g.n, this.running(), this.momentum, g.S);
  }

  /** running = (1 − m)·running + m·(the mean over instances of each channel's mean, and of its unbiased variance), in float64. */
  private updateRunning(
    stats: { mean: FloatArray; meanLo: FloatArray; variance: FloatArray }, N: number, running: { runningMean: FloatArray; runningVar: FloatArray }, m: number, S: number,
  ): void {
    const C = this.numFeatures;
    const { mean, meanLo, variance } = stats;
    const unbiased = S / (S - 1);
    for (let c = 0; c < C; c++) {
      let mu = 0;
      let v = 0;
      for (let i = 0; i < N; i++) {
        mu += mean[i * C + c] + meanLo[i * C + c];
        v += variance[i * C + c];
      }
      running.runningMean[c] = (1 - m) * running.runningMean[c] + m * (mu / N);
      running.runningVar[c] = (1 - m) * running.runningVar[c] + m * ((v / N) * unbiased);
    }
  }

  /** The state under PyTorch's names: weight and bias with affine; running_mean, running_var and num_batches_tracked with trackRunningStats. */
  stateDict(): PyTorchState {
    const state = this.paramState();
    if (this.trackRunningStats) {
      const { runningMean, runningVar } = this.running();
      state.running_mean = Array.from(runningMean);
      state.running_var = Array.from(runningVar);
      state.num_batches_tracked = this.numBatchesTracked;
    }
    return state;
  }

  /** Loads a state with exactly the keys stateDict() has; on any error the layer is left as it was. */
  loadStateDict(state: NormLayerStateInput): this {
    const entries = this.paramEntries();
    let count: { value: number } | null = null;
    if (this.trackRunningStats) {
      const { runningMean, runningVar } = this.running();
      entries.push({ key: "running_mean", target: runningMean }, { key: "running_var", target: runningVar, variance: true });
      count = { value: this.numBatchesTracked };
    }
    loadEntries(state, entries, this.numFeatures, this.dtype, count);
    if (count) this.numBatchesTracked = count.value;
    return this;
  }
}
