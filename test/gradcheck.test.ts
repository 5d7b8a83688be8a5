// Finite-difference check of the float64 gradients: independent of any formula for dx.
import { describe, expect, test } from "vitest";
import { type Backend, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync } from "../src/index.js";
import { randn } from "./helpers.js";

/** CS231n's relative error: max |a − b| / max(1e-8, |a| + |b|). */
function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1e-8, Math.abs(a[i]) + Math.abs(b[i])));
  return worst;
}

/** Central differences of L(v) = Σ out·dout with respect to each entry of v. */
function numericGradient(loss: () => number, v: Float64Array, h = 1e-5): Float64Array {
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

describe.each(["simd", "scalar", "js"] as Backend[])("%s backend", (backend) => {
  test.each([
    ["graph form", batchnormBackward],
    ["compact form", batchnormBackwardAlt],
  ] as const)("float64 dx, dgamma, dbeta match finite differences (%s)", (_, backwardFn) => {
    initSync({ backend });
    const n = 7;
    const d = 5;
    const x = randn(1, n * d, 3, 2);
    const gamma = randn(2, d, 1, 0.5);
    const beta = randn(3, d);
    const dout = randn(4, n * d);
    const loss = () => {
      const { out } = batchnormForward(x, gamma, beta, { mode: "train" });
      let sum = 0;
      for (let i = 0; i < out.length; i++) sum += out[i] * dout[i];
      return sum;
    };
    const { cache } = batchnormForward(x, gamma, beta, { mode: "train" });
    const { dx, dgamma, dbeta } = backwardFn(dout, cache!);
    const errors = {
      dx: relError(dx, numericGradient(loss, x)),
      dgamma: relError(dgamma, numericGradient(loss, gamma)),
      dbeta: relError(dbeta, numericGradient(loss, beta)),
    };
    expect(errors.dx).toBeLessThan(1e-7);
    expect(errors.dgamma).toBeLessThan(1e-7);
    expect(errors.dbeta).toBeLessThan(1e-7);
  });
});
