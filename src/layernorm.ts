// Layer normalization, CS231n-style: layernormForward / layernormBackward for row-major (N, D)
// data, each row normalized over its D values, gamma and beta per column. The same in train
// and test mode (no running statistics). The cache and the shared forward/backward here also
// serve GroupNorm and InstanceNorm (groupnorm.ts): all three are one step (group-step.ts)
// with statistics per (item, group).
import { type Dtype, type FloatArray, arrayType, copyOf, dtypeOf, unfilled } from "./dtype.js";
import { CHECKSUM_WORDS } from "./kernels.js";
import type { BackwardOutputs, BackwardResult, ForwardOutputs } from "./functional.js";
import { GROUP_SAVED, type GroupGeometry, runGroupBackward, runGroupForward } from "./group-step.js";
import * as check from "./validate.js";
import { type Engine, engine } from "./wasm.js";

/** The state object of layernormForward, as CS231n's ln_param; any other key is refused. */
export interface LNParam {
  /** Added to the variance; default 1e-5 (PyTorch's). */
  eps?: number;
}

/**
 * What a LayerNorm/GroupNorm/InstanceNorm forward keeps for its backward: a reference to x
 * (a copy when x is a view of the engine's memory), its checksum (a backward refuses an x
 * changed since, ChangedInputError), a copy of gamma, and the statistics: one value per
 * normalized group (per row for LayerNorm, per (item, group) for GroupNorm).
 */
export class NormCache<A extends FloatArray = FloatArray> {
  /** @internal */
  constructor(
    /** The forward's dtype. */
    readonly dtype: Dtype,
    /** @internal The kernels' view of the data. */
    readonly geometry: GroupGeometry,
    /** The caller's shape of x: [N, D] for LayerNorm, [N, C, ...] for GroupNorm. */
    readonly shape: readonly number[],
    /** The forward's eps. */
    readonly eps: number,
    /** The forward's input. */
    readonly x: A,
    /** gamma at the time of the forward, copied (ones without affine parameters). */
    readonly gamma: A,
    /** @internal mean, meanLo, variance, invStd: one row of n·G values each. */
    readonly saved: A,
    /** @internal The checksum of x at the time of the forward. */
    readonly checksum: Uint32Array,
    /** @internal Which gradients of the parameters a backward returns. */
    readonly affine: { gamma: boolean; beta: boolean },
  ) {}

  private row(name: (typeof GROUP_SAVED)[number]): A {
    const R = this.geometry.n * this.geometry.G;
    const k = GROUP_SAVED.indexOf(name);
    return this.saved.subarray(k * R, (k + 1) * R) as A;
  }
  /** The mean of each normalized group (rounded to the dtype; see meanLo). */
  get mean(): A {
    return this.row("mean");
  }
  /** mean + meanLo is the mean to twice the input's precision. */
  get meanLo(): A {
    return this.row("meanLo");
  }
  /** The biased variance of each normalized group. */
  get variance(): A {
    return this.row("variance");
  }
  /** 1/sqrt(variance + eps) of each normalized group. */
  get invStd(): A {
    return this.row("invStd");
  }
}

/** The result of a LayerNorm, GroupNorm or InstanceNorm forward. */
export interface NormForwardResult<A extends FloatArray = FloatArray> {
  /** The normalized, scaled and shifted output: a new array, or the options' `out`. */
  out: A;
  /** For the backward. */
  cache: NormCache<A>;
}

/** The options of layernormForward. */
export interface LayernormForwardOptions<A extends FloatArray = FloatArray> extends ForwardOutputs<A> {
  /** x's shape [N, D]: when given, D must be gamma.length and N·D x.length (else a RangeError). */
  shape?: readonly number[];
}

/** An options or outputs object, checked: an object with only `keys`. */
export function optionsOf<K extends string>(name: string, value: unknown, keys: readonly K[]): Partial<Record<K, unknown>> {
  if (value === undefined) return {};
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value)) {
    throw new TypeError(`${name} must be an object like { ${keys.join(", ")} }, got ${check.shown(value)}`);
  }
  check.knownKeys(name, value, keys);
  return value as Partial<Record<K, unknown>>;
}

/** eps of a param object ({ eps }), checked. */
export function epsOf(name: string, param: unknown): number {
  const given = optionsOf(name, param, ["eps"]);
  return check.eps(given.eps ?? 1e-5, `${name}.eps`);
}

/**
 * The forward shared by the three norms, after validation: x, gamma, beta of one dtype, the
 * geometry checked against x.length, gamma and beta G·K values each (the caller's, or ones and
 * zeros: `affine` says which gradients the backward returns), out checked.
 */
export function normForward(
  x: FloatArray, gamma: FloatArray, beta: FloatArray, g: GroupGeometry, shape: readonly number[], eps: number,
  out: FloatArray | undefined, affine: { gamma: boolean; beta: boolean }, e: Engine = engine(),
): NormForwardResult {
  const dtype = dtypeOf(x);
  const result = out ?? unfilled(dtype === "float64", x.length);
  const saved = new (arrayType(dtype))(GROUP_SAVED.length * g.n * g.G);
  const checksum = new Uint32Array(CHECKSUM_WORDS);
  const inEngine = e.heap.owns(x);
  const input = e.heap.pin(x);
  const gammaCopy = copyOf(gamma);
  runGroupForward(e, dtype, g, eps, { x, gamma, beta, out: result, saved, checksum });
  const kept = inEngine ? copyOf(input()) : x;
  return { out: result, cache: new NormCache(dtype, g, [...shape], eps, kept, gammaCopy, saved, checksum, affine) };
}

/** The backward shared by the three norms; `name` for messages. dgamma/dbeta are null without affine parameters. */
export function normBackward(name: string, dout: FloatArray, cache: NormCache, outputs: unknown, e: Engine = engine()): { dx: FloatArray; dgamma: FloatArray | null; dbeta: FloatArray | null } {
  if (!(cache instanceof NormCache)) {
    throw new TypeError(`${name}: cache must be the cache returned by the matching forward, got ${cache === null ? "null" : typeof cache}`);
  }
  const { dtype, geometry: g, x } = cache;
  check.floatArray("dout", dout, dtype);
  if (dout.length !== x.length) {
    throw new RangeError(`dout must have length ${x.length} (shape [${cache.shape.join(", ")}], that of the cached forward), got length ${dout.length}`);
  }
  check.floatArray("cache.x", x, dtype);
  const given = optionsOf(`${name} outputs`, outputs, ["dx", "dgamma", "dbeta"]) as Partial<Record<"dx" | "dgamma" | "dbeta", FloatArray>>;
  const C = g.G * g.K;
  if (!cache.affine.gamma && given.dgamma) throw new TypeError(`${name}: outputs.dgamma given, but the forward had no gamma`);
  if (!cache.affine.beta && given.dbeta) throw new TypeError(`${name}: outputs.dbeta given, but the forward had no beta`);
  const f64 = dtype === "float64";
  const dx = given.dx ? check.output("outputs.dx", given.dx, dtype, x.length, {}, []) : unfilled(f64, x.length);
  const dgamma = !cache.affine.gamma ? null
    : given.dgamma ? check.output("outputs.dgamma", given.dgamma, dtype, C, { "outputs.dx": given.dx }, []) : unfilled(f64, C);
  const dbeta = !cache.affine.beta ? null
    : given.dbeta ? check.output("outputs.dbeta", given.dbeta, dtype, C, { "outputs.dx": given.dx, "outputs.dgamma": given.dgamma }, []) : unfilled(f64, C);
  runGroupBackward(e, dtype, g, { dout, x, gamma: cache.gamma, saved: cache.saved, checksum: cache.checksum, dx, dgamma, dbeta });
  return { dx, dgamma, dbeta };
}

/** The checks every norm makes of x, gamma and beta: one dtype, gamma and beta of `channels` values. */
export function checkParams(x: unknown, gamma: unknown, beta: unknown, what: string): { dtype: Dtype; d: number } {
  check.floatArray("x", x);
  const dtype = dtypeOf(x as FloatArray);
  const d = check.floatArray("gamma", gamma, dtype).length;
  check.floatArray("beta", beta, dtype);
  if ((beta as FloatArray).length !== d) {
    throw new RangeError(`gamma and beta must have one value per ${what} each: gamma has length ${d}, beta ${(beta as FloatArray).length}`);
  }
  return { dtype, d };
}

/**
 * Layer normalization of row-major (N, D) x, D = gamma.length, as CS231n's
 * layernorm_forward and PyTorch's F.layer_norm over the last dimension: each row normalized
 * with its own mean and biased variance, then scaled by gamma and shifted by beta per column.
 * `options.out` is written into when given; `options.shape` ([N, D]) is checked.
 */
export function layernormForward<A extends FloatArray>(x: A, gamma: A, beta: A, lnParam?: LNParam, options?: LayernormForwardOptions<A>): NormForwardResult<A> {
  const { dtype, d } = checkParams(x, gamma, beta, "feature (D = gamma.length)");
  const eps = epsOf("lnParam", lnParam);
  const given = optionsOf("layernormForward options", options, ["out", "shape"]);
  const n = check.rowsOf(x.length, d);
  if (given.shape !== undefined) {
    const s = given.shape;
    if (!Array.isArray(s) || s.length !== 2) throw new RangeError(`options.shape must be [N, D], got ${check.shown(s)}`);
    if (s[1] !== d) throw new RangeError(`options.shape[1] must be D = gamma.length = ${d}, got ${check.shown(s[1])}`);
    if (s[0] !== n) throw new RangeError(`options.shape[0] must be N = x.length / D = ${n}, got ${check.shown(s[0])}`);
  }
  const out = given.out === undefined ? undefined : check.output("options.out", given.out, dtype, x.length, { x, gamma, beta }, []);
  return normForward(x, gamma, beta, { n, G: 1, K: d, S: 1, channelsLast: false }, [n, d], eps, out, { gamma: true, beta: true }) as NormForwardResult<A>;
}

/**
 * Backward of layernormForward: dx (N, D), dgamma and dbeta (D each). dx = invStd·(g −
 * mean(g) − x̂·mean(g·x̂)) per row with g = dout·gamma; outputs may be given (dx may be dout).
 */
export function layernormBackward<A extends FloatArray>(dout: A, cache: NormCache<A>, outputs?: BackwardOutputs<A>): BackwardResult<A> {
  return normBackward("layernormBackward", dout, cache, outputs) as BackwardResult<A>;
}
