// The fused batch norm + ReLU (activation: 'relu'): out = max(0, BN(x)) and its gradient,
// against a plain float64 loop written here, against the package's own BN followed by a ReLU
// written here, and against finite differences; the gradient at exactly 0 is 0 (PyTorch).
import { describe, expect, test } from "vitest";
import type { Dtype, FloatArray } from "../src/dtype.js";
import {
  type Backend, BatchNorm, type BNParam, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync, spatialBatchnormBackward,
  spatialBatchnormForward,
} from "../src/index.js";
import { expectClose, maxAbs, numericGradient, randn, tolerance, typed, unitRoundoff } from "./helpers.js";

const BACKENDS: Backend[] = ["simd", "scalar", "js"];
const DTYPES: Dtype[] = ["float32", "float64"];
const EPS = 1e-5;

type Layout = "rows" | "NCHW" | "NHWC";

/** Index of value s of channel j of item i (rows: S = 1). */
function indexOf(layout: Layout, d: number, S: number) {
  return layout === "NHWC" ? (i: number, j: number, s: number) => (i * S + s) * d + j : (i: number, j: number, s: number) => (i * d + j) * S + s;
}

/** Train-mode batch norm then ReLU in float64, by the textbook formulas. */
function bnRelu64(x: ArrayLike<number>, n: number, d: number, S: number, layout: Layout, gamma: ArrayLike<number>, beta: ArrayLike<number>) {
  const at = indexOf(layout, d, S);
  const N = n * S;
  const mean = new Float64Array(d);
  const inv = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    let sum = 0;
    for (let i = 0; i < n; i++) for (let s = 0; s < S; s++) sum += x[at(i, j, s)];
    mean[j] = sum / N;
    let sq = 0;
    for (let i = 0; i < n; i++) for (let s = 0; s < S; s++) sq += (x[at(i, j, s)] - mean[j]) ** 2;
    inv[j] = 1 / Math.sqrt(sq / N + EPS);
  }
  const xhat = new Float64Array(x.length);
  const out = new Float64Array(x.length);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      for (let s = 0; s < S; s++) {
        const k = at(i, j, s);
        xhat[k] = (x[k] - mean[j]) * inv[j];
        out[k] = Math.max(0, gamma[j] * xhat[k] + beta[j]);
      }
    }
  }
  return { out, xhat, inv, mean };
}

/** The batch-norm gradient (compact form) of dout masked by `mask`, in float64. */
function backward64(
  dout: ArrayLike<number>, mask: ArrayLike<number>, n: number, d: number, S: number, layout: Layout,
  gamma: ArrayLike<number>, f: { xhat: Float64Array; inv: Float64Array },
) {
  const at = indexOf(layout, d, S);
  const N = n * S;
  const dgamma = new Float64Array(d);
  const dbeta = new Float64Array(d);
  const dx = new Float64Array(dout.length);
  let term = 0;
  for (let j = 0; j < d; j++) {
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < S; s++) {
        const k = at(i, j, s);
        const dm = mask[k] ? dout[k] : 0;
        dbeta[j] += dm;
        dgamma[j] += dm * f.xhat[k];
        term = Math.max(term, Math.abs(gamma[j] * f.inv[j] * dout[k]));
      }
    }
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < S; s++) {
        const k = at(i, j, s);
        const dm = mask[k] ? dout[k] : 0;
        dx[k] = ((gamma[j] * f.inv[j]) / N) * (N * dm - dbeta[j] - f.xhat[k] * dgamma[j]);
      }
    }
  }
  return { dx, dgamma, dbeta, term };
}

/** dx within the core's relative tolerance plus a few roundings of its largest term γ·invStd·dout. */
function expectGradients(
  dtype: Dtype, got: { dx: ArrayLike<number>; dgamma: ArrayLike<number>; dbeta: ArrayLike<number> },
  want: { dx: ArrayLike<number>; dgamma: ArrayLike<number>; dbeta: ArrayLike<number>; term: number }, what: string, n: number,
) {
  const tol = tolerance(dtype);
  const u = unitRoundoff(dtype);
  expectClose(got.dx, want.dx, tol.rel * maxAbs(want.dx) + 8 * u * want.term, `${what} dx`);
  // Column sums of N terms: their rounding grows with N in float32.
  const sums = tol.rel + 4 * u * Math.sqrt(n);
  expectClose(got.dgamma, want.dgamma, sums * Math.max(1, maxAbs(want.dgamma)), `${what} dgamma`);
  expectClose(got.dbeta, want.dbeta, sums * Math.max(1, maxAbs(want.dbeta)), `${what} dbeta`);
}

const relu = (a: ArrayLike<number>) => Array.from(a, (v) => Math.max(0, v));
const positive = (a: ArrayLike<number>) => Array.from(a, (v) => (v > 0 ? 1 : 0));

function data(dtype: Dtype, seed: number, size: number, d: number) {
  return {
    x: typed(dtype, randn(seed, size, 3, 2)),
    gamma: typed(dtype, randn(seed + 1, d, 1, 0.5)),
    beta: typed(dtype, randn(seed + 2, d, 0, 0.5)),
    dout: typed(dtype, randn(seed + 3, size)),
  };
}

describe.each(BACKENDS)("%s", (backend) => {
  describe.each(DTYPES)("%s", (dtype) => {
    // Narrow and wide groups, a row tail, the streaming loops (1024 × 600 values), channels.
    const rows: [number, number][] = [[1, 1], [7, 3], [64, 5], [33, 16], [100, 67], [600, 1024]];
    test.each(rows)("rows (%i, %i): train forward and backward", (n, d) => {
      initSync({ backend });
      const { x, gamma, beta, dout } = data(dtype, n * 31 + d, n * d, d);
      const bnParam: BNParam = { mode: "train", activation: "relu" };
      const { out, cache } = batchnormForward(x, gamma, beta, bnParam);
      const ref = bnRelu64(x, n, d, 1, "rows", gamma, beta);
      const tol = tolerance(dtype);
      expectClose(out, ref.out, tol.abs * Math.max(1, maxAbs(ref.out)), "out vs float64 loop");
      // The package's batch norm, then a ReLU; 'simd' on its plain SIMD build, whose normalize
      // rounds (x − mean)·scale + bias unfused as the fused ReLU's does (the relaxed build fuses it).
      const plainParam: BNParam = { mode: "train" };
      initSync({ backend, relaxed: false });
      const plain = batchnormForward(x, gamma, beta, plainParam);
      initSync({ backend });
      const composed = relu(plain.out);
      if (dtype === "float64" && backend !== "js") expect(Array.from(out)).toEqual(composed);
      else expectClose(out, composed, 8 * unitRoundoff(dtype) * Math.max(1, maxAbs(composed)), "out vs BN then ReLU");
      for (let k = 0; k < out.length; k++) if (!(out[k] >= 0)) throw new Error(`out[${k}] = ${out[k]}`);
      expect(Array.from(bnParam.runningMean!)).toEqual(Array.from(plainParam.runningMean!));
      expect(Array.from(bnParam.runningVar!)).toEqual(Array.from(plainParam.runningVar!));

      // The mask is the forward's out > 0, as a ReLU's backward has it.
      const mask = positive(out);
      const want = backward64(dout, mask, n, d, 1, "rows", gamma, ref);
      for (const [form, run] of [["compact", batchnormBackwardAlt], ["graph", batchnormBackward]] as const) {
        const got = run(dout, cache);
        expectGradients(dtype, got, want, `${form}`, n);
        // The package's backward of the ReLU's masked dout.
        const maskedDout = typed(dtype, Array.from(dout, (v, k) => (mask[k] ? v : 0)));
        const composedGrads = run(maskedDout, plain.cache);
        expectGradients(dtype, got, { ...composedGrads, term: want.term }, `${form} vs BN backward of ReLU's dout`, n);
      }
    });

    const spatial: number[][] = [[2, 3, 5, 7], [4, 16, 3, 3], [3, 5, 9], [8, 4, 56]];
    describe.each(["NCHW", "NHWC"] as const)("%s", (layout) => {
      test.each(spatial)("spatial [%i, %i, …]: train and test forward, backward", (...shape) => {
        initSync({ backend });
        const [n, d] = shape;
        const S = shape.slice(2).reduce((a, b) => a * b, 1);
        const { x, gamma, beta, dout } = data(dtype, n * 17 + d + S, n * d * S, d);
        const bnParam: BNParam = { mode: "train", activation: "relu", momentum: 0.5 };
        const { out, cache } = spatialBatchnormForward(x, gamma, beta, bnParam, shape, layout);
        const ref = bnRelu64(x, n, d, S, layout, gamma, beta);
        expectClose(out, ref.out, tolerance(dtype).abs * Math.max(1, maxAbs(ref.out)), "out");
        const got = spatialBatchnormBackward(dout, cache);
        expectGradients(dtype, got, backward64(dout, positive(out), n, d, S, layout, gamma, ref), "backward", n * S);

        // Test mode: max(0, γ·(x − runMean)/sqrt(runVar + eps) + β), against the package's test-mode BN then a ReLU.
        const testOut = spatialBatchnormForward(x, gamma, beta, { ...bnParam, mode: "test" }, shape, layout).out;
        const plainOut = spatialBatchnormForward(x, gamma, beta, { ...bnParam, mode: "test", activation: "none" }, shape, layout).out;
        const at = indexOf(layout, d, S);
        const want = new Float64Array(x.length);
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < d; j++) {
            for (let s = 0; s < S; s++) {
              const k = at(i, j, s);
              want[k] = Math.max(0, (gamma[j] * (x[k] - bnParam.runningMean![j])) / Math.sqrt(bnParam.runningVar![j] + EPS) + beta[j]);
            }
          }
        }
        const scale = Math.max(1, maxAbs(want));
        expectClose(testOut, want, tolerance(dtype).abs * scale, "test-mode out vs float64 loop");
        expectClose(testOut, relu(plainOut), 8 * unitRoundoff(dtype) * scale, "test-mode out vs BN then ReLU");
      });
    });

    test("the gradient at exactly 0 is 0 (x at the mean, beta 0)", () => {
      initSync({ backend });
      // Per column the values m − 1, m, m, m + 1 (the mean m exact): rows 1 and 2 normalize to
      // exactly 0, row 0 below, row 3 above.
      const d = 5;
      const base = [-1, 0, 0, 1];
      const m = [3, -2, 0.5, 7, 100];
      const x = typed(dtype, base.flatMap((b) => m.map((mj) => mj + b)));
      const gamma = typed(dtype, [1, 0.5, 2, 1.5, 0.25]);
      const beta = typed(dtype, [0, 0, 0, 0, 0]);
      const dout = typed(dtype, randn(5, 4 * d));
      const { out, cache } = batchnormForward(x, gamma, beta, { mode: "train", activation: "relu" });
      for (let j = 0; j < d; j++) {
        expect([out[j], out[d + j], out[2 * d + j]], `column ${j}`).toEqual([0, 0, 0]);
        expect(out[3 * d + j]).toBeGreaterThan(0);
      }
      const got = batchnormBackwardAlt(dout, cache);
      // Only row 3 passes the mask: dbeta is its dout, dgamma its dout·x̂ (x̂ = 1/sqrt(1/2 + eps)).
      const mask = [0, 0, 0, 1].flatMap((v) => m.map(() => v));
      const ref = bnRelu64(x, 4, d, 1, "rows", gamma, beta);
      const want = backward64(dout, mask, 4, d, 1, "rows", gamma, ref);
      for (let j = 0; j < d; j++) expect(got.dbeta[j]).toBe(dout[3 * d + j]);
      expectGradients(dtype, got, want, "at 0", 4);
    });

    test("layer: train and eval mode, the workspace, no beta", () => {
      initSync({ backend });
      const n = 24;
      const d = 6;
      const { x, gamma, beta, dout } = data(dtype, 77, n * d, d);
      const layer = new BatchNorm(d, { dtype, activation: "relu", momentum: 0.5 });
      layer.gamma.set(gamma);
      layer.beta.set(beta);
      const out = layer.forward(x as never);
      const ref = bnRelu64(x, n, d, 1, "rows", gamma, beta);
      expectClose(out, ref.out, tolerance(dtype).abs * Math.max(1, maxAbs(ref.out)), "layer out");
      const dx = layer.backward(dout as never);
      const want = backward64(dout, positive(out), n, d, 1, "rows", gamma, ref);
      expectGradients(dtype, { dx, dgamma: layer.dgamma, dbeta: layer.dbeta }, want, "layer", n);

      // The workspace runs the same steps.
      const ws = layer.workspace(n);
      ws.x.set(x);
      expectClose(ws.forward(), out, 0, "workspace out");
      ws.dout.set(dout);
      expectClose(ws.backward(), dx, 0, "workspace dx");

      // Eval mode: the statistics are constants, dx = dout·mask·γ/sqrt(runVar + eps).
      layer.eval();
      const evalOut = layer.forward(x as never);
      const evalDx = layer.backward(dout as never);
      const rm = layer.runningMean;
      const rv = layer.runningVar;
      const wantOut = new Float64Array(x.length);
      const wantDx = new Float64Array(x.length);
      for (let k = 0; k < x.length; k++) {
        const j = k % d;
        const inv = 1 / Math.sqrt(rv[j] + EPS);
        wantOut[k] = Math.max(0, gamma[j] * (x[k] - rm[j]) * inv + beta[j]);
        wantDx[k] = evalOut[k] > 0 ? dout[k] * gamma[j] * inv : 0;
      }
      expectClose(evalOut, wantOut, tolerance(dtype).abs * Math.max(1, maxAbs(wantOut)), "eval out");
      expectClose(evalDx, wantDx, tolerance(dtype).rel * maxAbs(wantDx), "eval dx");

      // Without beta (center: false): the map and the mask use beta = 0.
      const noBeta = new BatchNorm(d, { dtype, activation: "relu", center: false });
      noBeta.gamma.set(gamma);
      const zero = new Array(d).fill(0);
      const out0 = noBeta.forward(x as never);
      const ref0 = bnRelu64(x, n, d, 1, "rows", gamma, zero);
      expectClose(out0, ref0.out, tolerance(dtype).abs * Math.max(1, maxAbs(ref0.out)), "no-beta out");
      const dx0 = noBeta.backward(dout as never);
      const want0 = backward64(dout, positive(out0), n, d, 1, "rows", gamma, ref0);
      expectGradients(dtype, { dx: dx0, dgamma: noBeta.dgamma, dbeta: want0.dbeta }, want0, "no-beta", n);
    });
  });

  test("float64 finite differences away from the kink", () => {
    initSync({ backend });
    const n = 6;
    const d = 3;
    const x = Float64Array.from(randn(901, n * d, 1, 1.5));
    const gamma = Float64Array.from(randn(902, d, 1, 0.3));
    const beta = Float64Array.from(randn(903, d, 0.2, 0.5));
    const w = Float64Array.from(randn(904, n * d));
    const ref = bnRelu64(x, n, d, 1, "rows", gamma, beta);
    // No pre-activation near 0: a step of h moves none across the kink.
    for (let k = 0; k < x.length; k++) expect(Math.abs(gamma[k % d] * ref.xhat[k] + beta[k % d])).toBeGreaterThan(1e-3);
    const f = () => batchnormForward(x, gamma, beta, { mode: "train", activation: "relu" }).out;
    const { cache } = batchnormForward(x, gamma, beta, { mode: "train", activation: "relu" });
    const got = batchnormBackwardAlt(w, cache);
    const fdX = numericGradient(f, w, x, 1e-6);
    const fdG = numericGradient(f, w, gamma, 1e-6);
    const fdB = numericGradient(f, w, beta, 1e-6);
    expectClose(got.dx, fdX, 1e-6 * Math.max(1, maxAbs(fdX)), "dx vs finite differences");
    expectClose(got.dgamma, fdG, 1e-6 * Math.max(1, maxAbs(fdG)), "dgamma vs finite differences");
    expectClose(got.dbeta, fdB, 1e-6 * Math.max(1, maxAbs(fdB)), "dbeta vs finite differences");
  });
});

describe("bad activations", () => {
  const x = new Float32Array([1, 2, 3, 4]);
  const gamma = new Float32Array([1, 1]);
  const beta = new Float32Array([0, 0]);
  test.each(["gelu", "RELU", null, 1, true, ""])("%s is refused, nothing changed", (activation) => {
    const bnParam = { mode: "train", activation } as unknown as BNParam<Float32Array>;
    expect(() => batchnormForward(x, gamma, beta, bnParam)).toThrow(/bnParam\.activation must be 'relu' or 'none'/);
    expect(bnParam.runningMean).toBeUndefined();
    expect(() => new BatchNorm(2, { activation } as never)).toThrow(/options\.activation must be 'relu' or 'none'/);
    const arr: FloatArray = x;
    expect(Array.from(arr)).toEqual([1, 2, 3, 4]);
  });
  test("'none' is the plain batch norm", () => {
    const a = batchnormForward(x, gamma, beta, { mode: "train", activation: "none" }).out;
    const b = batchnormForward(x, gamma, beta, { mode: "train" }).out;
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Math.min(...a)).toBeLessThan(0);
  });
});
