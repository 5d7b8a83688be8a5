// LayerNorm (layernormForward / layernormBackward) against PyTorch's F.layer_norm and its
// autograd (test/fixtures/norms.json, scripts/fixtures-norms.py), finite differences, and
// the backends against each other; bad input is refused with nothing written.
import { describe, expect, test } from "vitest";
import type { Dtype } from "../src/dtype.js";
import { type Backend, ChangedInputError, initSync, layernormBackward, layernormForward } from "../src/index.js";
import { expectClose, maxAbs, numericGradient, randn, relError, tolerance, typed } from "./helpers.js";
import { expectBackendsAgree, expectGradClose, groupTerms, normFixtures } from "./norms-helpers.js";

const BACKENDS: Backend[] = ["simd", "scalar", "js"];

/** The gradients' terms of rows: groupTerms with one group of D values per row. */
function terms(x: ArrayLike<number>, gamma: ArrayLike<number>, dout: ArrayLike<number>, n: number, d: number, eps: number) {
  return groupTerms(x, gamma, dout, n, 1, d, 1, eps);
}

describe.each(BACKENDS)("%s backend", (backend) => {
  test.each(normFixtures.layer.map((c) => [c.name, c] as const))("PyTorch %s", (_, c) => {
    initSync({ backend });
    const [n, d] = c.shape;
    const x = typed(c.dtype, c.x);
    const gamma = typed(c.dtype, c.gamma);
    const beta = typed(c.dtype, c.beta);
    const dout = typed(c.dtype, c.dout);
    const { out, cache } = layernormForward(x, gamma, beta, { eps: c.eps });
    const tol = tolerance(c.dtype);
    expectClose(out, c.out, tol.abs * Math.max(1, maxAbs(c.out)), "out");
    expect(cache.mean.length).toBe(n);
    const grads = layernormBackward(dout, cache);
    const t = terms(c.x, c.gamma, c.dout, n, d, c.eps);
    expectGradClose(c.dtype, grads.dx, c.dx, t.dx, "dx");
    expectGradClose(c.dtype, grads.dgamma, c.dgamma, t.dgamma, "dgamma");
    expectGradClose(c.dtype, grads.dbeta, c.dbeta, t.dbeta, "dbeta");
  });

  test("float64 finite differences of dx, dgamma, dbeta", () => {
    initSync({ backend });
    const [n, d] = [4, 7];
    const x = randn(1, n * d, 3, 2);
    const gamma = randn(2, d, 1, 0.5);
    const beta = randn(3, d);
    const dout = randn(4, n * d);
    const f = () => layernormForward(x, gamma, beta, { eps: 1e-5 }).out;
    const grads = layernormBackward(dout, layernormForward(x, gamma, beta, { eps: 1e-5 }).cache);
    expect(relError(grads.dx, numericGradient(f, dout, x))).toBeLessThan(1e-7);
    expect(relError(grads.dgamma, numericGradient(f, dout, gamma))).toBeLessThan(1e-7);
    expect(relError(grads.dbeta, numericGradient(f, dout, beta))).toBeLessThan(1e-7);
  });

  test("a float32 row of mean 1e4 and spread 1 keeps x̂ to float32 precision", () => {
    initSync({ backend });
    const [n, d] = [16, 257];
    const x64 = randn(5, n * d, 1e4, 1);
    const x = Float32Array.from(x64);
    const { out } = layernormForward(x, new Float32Array(d).fill(1), new Float32Array(d), { eps: 0 });
    // x̂ of the float32 values, in float64 by a plain loop.
    const want = new Float64Array(n * d);
    for (let i = 0; i < n; i++) {
      let m = 0;
      for (let j = 0; j < d; j++) m += x[i * d + j] / d;
      let v = 0;
      for (let j = 0; j < d; j++) v += (x[i * d + j] - m) ** 2 / d;
      for (let j = 0; j < d; j++) want[i * d + j] = (x[i * d + j] - m) / Math.sqrt(v);
    }
    expectClose(out, want, 2e-6, "out");
  });
});

describe.each(["float32", "float64"] as Dtype[])("%s: the backends agree", (dtype) => {
  // N = 300 at D = 1031: a batch of 2.4 MiB in float64.
  describe.each([1, 3, 5, 16, 67, 1031])("D = %i", (d) => {
    test.each(d === 1031 ? [1, 2, 7, 64, 300] : [1, 2, 7, 64])("N = %i", (n) => {
      const seed = n * 131 + d;
      const x = typed(dtype, randn(seed, n * d, 2, 3));
      const gamma = typed(dtype, randn(seed + 1, d, 1, 0.5));
      const beta = typed(dtype, randn(seed + 2, d));
      const dout = typed(dtype, randn(seed + 3, n * d));
      const run = (backend: Backend) => {
        initSync({ backend });
        const { out, cache } = layernormForward(x, gamma, beta);
        return { out, invStd: Array.from(cache.invStd), ...layernormBackward(dout, cache) };
      };
      expectBackendsAgree(dtype, run, terms(x, gamma, dout, n, d, 1e-5));
    });
  });
});

describe("outputs and errors", () => {
  const x = Float64Array.from(randn(9, 12));
  const gamma = new Float64Array(4).fill(1);
  const beta = new Float64Array(4);

  test("given outputs are written and returned; dx may be dout", () => {
    initSync({ backend: "simd" });
    const out = new Float64Array(12);
    const r = layernormForward(x, gamma, beta, undefined, { out, shape: [3, 4] });
    expect(r.out).toBe(out);
    const want = layernormForward(x, gamma, beta).out;
    expect(Array.from(out)).toEqual(Array.from(want));
    const dout = Float64Array.from(randn(10, 12));
    const plain = layernormBackward(Float64Array.from(dout), r.cache);
    const same = layernormBackward(dout, r.cache, { dx: dout });
    expect(same.dx).toBe(dout);
    expect(Array.from(same.dx)).toEqual(Array.from(plain.dx));
  });

  test.each<[string, () => unknown, RegExp]>([
    ["x not a float array", () => layernormForward([1, 2] as unknown as Float64Array, gamma, beta), /x must be a Float32Array or Float64Array/],
    ["mixed dtypes", () => layernormForward(x, new Float32Array(4) as unknown as Float64Array, beta), /float32 and float64 are never mixed/],
    ["beta's length", () => layernormForward(x, gamma, new Float64Array(3)), /gamma has length 4, beta 3/],
    ["x not N·D", () => layernormForward(x.subarray(0, 10), gamma, beta), /multiple of D = 4/],
    ["eps", () => layernormForward(x, gamma, beta, { eps: -1 }), /lnParam.eps must be a finite number/],
    ["unknown lnParam key", () => layernormForward(x, gamma, beta, { mode: "train" } as never), /lnParam/],
    ["shape", () => layernormForward(x, gamma, beta, undefined, { shape: [4, 3] }), /options.shape\[1\] must be D/],
    ["out overlapping x", () => layernormForward(x, gamma, beta, undefined, { out: x }), /shares memory with x/],
    ["out's length", () => layernormForward(x, gamma, beta, undefined, { out: new Float64Array(11) }), /length 12/],
    ["no cache", () => layernormBackward(x, null as never), /cache must be the cache/],
  ])("%s", (_, call, message) => {
    initSync({ backend: "simd" });
    const copy = Float64Array.from(x);
    expect(call).toThrow(message);
    expect(Array.from(x)).toEqual(Array.from(copy));
  });

  test("dout's length, and an x changed since the forward", () => {
    initSync({ backend: "simd" });
    const mine = Float64Array.from(x);
    const { cache } = layernormForward(mine, gamma, beta);
    const dx = new Float64Array(12).fill(7);
    expect(() => layernormBackward(new Float64Array(8), cache)).toThrow(/dout must have length 12/);
    mine[3] += 1;
    expect(() => layernormBackward(new Float64Array(12), cache, { dx })).toThrow(ChangedInputError);
    expect(dx.every((v) => v === 7)).toBe(true);
  });
});
