// Finite-difference check of the float64 gradients: independent of any formula for dx.
import { describe, expect, test } from "vitest";
import { type Backend, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync } from "../src/index.js";
import { numericGradient, randn, relError } from "./helpers.js";

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
    const f = () => batchnormForward(x, gamma, beta, { mode: "train" }).out;
    const { cache } = batchnormForward(x, gamma, beta, { mode: "train" });
    const { dx, dgamma, dbeta } = backwardFn(dout, cache!);
    const errors = {
      dx: relError(dx, numericGradient(f, dout, x)),
      dgamma: relError(dgamma, numericGradient(f, dout, gamma)),
      dbeta: relError(dbeta, numericGradient(f, dout, beta)),
    };
    expect(errors.dx).toBeLessThan(1e-7);
    expect(errors.dgamma).toBeLessThan(1e-7);
    expect(errors.dbeta).toBeLessThan(1e-7);
  });
});
