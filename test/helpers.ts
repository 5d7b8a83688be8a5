import { expect } from "vitest";
import reference from "./fixtures/reference.json" with { type: "json" };
import { gaussian, rng } from "../demo/data.js";
import type { ArrayOf, Dtype } from "../src/dtype.js";

export interface Case {
  name: string; dtype: "float32" | "float64"; n: number; d: number; eps: number;
  x: number[]; gamma: number[]; beta: number[]; dout: number[];
  out: number[]; mean: number[]; var: number[]; dx: number[]; dgamma: number[]; dbeta: number[];
}
export interface Sequence {
  name: string; dtype: "float32" | "float64"; n: number; d: number; eps: number; momentum: number;
  gamma: number[]; beta: number[]; batches: number[][];
  runningMean: number[]; runningVar: number[]; xTest: number[]; outTest: number[];
}

// Imported as a module (not read from disk) so the same tests run in Node and in Chromium.
export const fixtures = reference as { cases: Case[]; sequences: Sequence[] };

export function typed<D extends Dtype>(dtype: D, values: ArrayLike<number>): ArrayOf<D> {
  return (dtype === "float64" ? Float64Array.from(values) : Float32Array.from(values)) as ArrayOf<D>;
}

/** Tolerances of the core issue: float32 5e-5 absolute on outputs, 2e-5 relative on gradients; float64 1e-9. */
export function tolerance(dtype: "float32" | "float64") {
  return dtype === "float64" ? { abs: 1e-9, rel: 1e-9 } : { abs: 5e-5, rel: 2e-5 };
}

/** Every |got − want| ≤ abs. */
export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, abs: number, what = "") {
  expect(got.length, `${what} length`).toBe(want.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  expect(worst, `${what}: worst error ${worst} at ${at} (got ${got[at]}, want ${want[at]})`).toBeLessThanOrEqual(abs);
}

/**
 * The same values, bit for bit as Object.is sees them (NaN equals NaN, −0 is not 0), and of
 * the same type: toEqual's element-by-element walk takes seconds on a million values.
 */
export function expectIdentical(got: ArrayLike<number>, want: ArrayLike<number>, what = "") {
  expect(Object.getPrototypeOf(got), `${what} type`).toBe(Object.getPrototypeOf(want));
  expect(got.length, `${what} length`).toBe(want.length);
  let differ = 0;
  let first = -1;
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) {
      if (differ++ === 0) first = i;
    }
  }
  expect(differ, `${what}: ${differ} values differ, the first at ${first} (got ${got[first]}, want ${want[first]})`).toBe(0);
}

/** Every |got − want| ≤ rel · max|want|: relative to the scale of the gradient. */
export function expectRelClose(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, what = "") {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  expectClose(got, want, rel * Math.max(scale, Number.MIN_VALUE), what);
}

/** Deterministic normal pseudo-random numbers (the demo's seeded generator). */
export function randn(seed: number, length: number, loc = 0, scale = 1): Float64Array {
  const normal = gaussian(rng(seed));
  return Float64Array.from({ length }, () => loc + scale * normal());
}

/** Unit roundoff of the working type. */
export function unitRoundoff(dtype: "float32" | "float64"): number {
  return dtype === "float64" ? 2 ** -53 : 2 ** -24;
}

/**
 * dx within rel·max|dx| plus a few roundings of its largest term γ·invStd·dout: evaluated in
 * the input's type, dx = γ·invStd·(dout − mean(dout) − x̂·mean(dout·x̂)) cancels to far below
 * that term when N is tiny (N = 2 gives dx ∝ eps/var), and no evaluation in that type can
 * do better than a rounding of the terms.
 */
export function expectDxClose(
  got: ArrayLike<number>, c: { dtype: "float32" | "float64"; n: number; d: number; eps: number; gamma: number[]; var: number[]; dout: number[]; dx: number[] },
) {
  let term = 0;
  for (let i = 0; i < c.dout.length; i++) {
    const j = i % c.d;
    term = Math.max(term, (Math.abs(c.gamma[j]) / Math.sqrt(c.var[j] + c.eps)) * Math.abs(c.dout[i]));
  }
  let scale = 0;
  for (const v of c.dx) scale = Math.max(scale, Math.abs(v));
  expectClose(got, c.dx, tolerance(c.dtype).rel * scale + 8 * unitRoundoff(c.dtype) * term, "dx");
}

export function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}

/** Central differences of L = Σ f()·dout with respect to each entry of v (float64). */
export function numericGradient(f: () => ArrayLike<number>, dout: ArrayLike<number>, v: Float64Array, h = 1e-5): Float64Array {
  const loss = () => {
    const out = f();
    let s = 0;
    for (let i = 0; i < out.length; i++) s += out[i] * dout[i];
    return s;
  };
  const grad = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const keep = v[i];
    v[i] = keep + h;
    const plus = loss();
    v[i] = keep - h;
    const minus = loss();
    v[i] = keep;
    grad[i] = (plus - minus) / (2 * h);
  }
  return grad;
}

/** CS231n's relative error: max |a − b| / max(1e-8, |a| + |b|). */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1e-8, Math.abs(a[i]) + Math.abs(b[i])));
  return worst;
}
