// The fused ReLU's backward of channels-first data channel by channel (assembly/channels-relu.ts,
// chosen by channelByChannel in src/wasm.ts): on shapes derived from its thresholds, against
// float64 loops written here (batch norm, ReLU, the compact gradient of the masked dout), and
// against the package's own batch-norm backward of the ReLU's masked dout.
import { describe, expect, test } from "vitest";
import type { Dtype } from "../src/dtype.js";
import { type Backend, BatchNorm, batchnormBackward, batchnormBackwardAlt, initSync, spatialBatchnormBackward, spatialBatchnormForward } from "../src/index.js";
import { CHANNEL_BACKWARD_BYTES, CHANNEL_RUN_BYTES } from "../src/tuning.js";
import { channelByChannel } from "../src/wasm.js";
import { expectClose, maxAbs, randn, tolerance, typed, unitRoundoff } from "./helpers.js";

const EPS = 1e-5;

/** BN (train) then ReLU of NCHW (n, C, S) data, and the compact gradient of dout masked by out > 0, in float64. */
function reference(x: ArrayLike<number>, dout: ArrayLike<number>, n: number, C: number, S: number, gamma: ArrayLike<number>, beta: ArrayLike<number>) {
  const N = n * S;
  const at = (i: number, c: number, s: number) => (i * C + c) * S + s;
  const out = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  let term = 0;
  for (let c = 0; c < C; c++) {
    let sum = 0;
    for (let i = 0; i < n; i++) for (let s = 0; s < S; s++) sum += x[at(i, c, s)];
    const mean = sum / N;
    let sq = 0;
    for (let i = 0; i < n; i++) for (let s = 0; s < S; s++) sq += (x[at(i, c, s)] - mean) ** 2;
    const inv = 1 / Math.sqrt(sq / N + EPS);
    const xhat = (k: number) => (x[k] - mean) * inv;
    for (let i = 0; i < n; i++) for (let s = 0; s < S; s++) out[at(i, c, s)] = Math.max(0, gamma[c] * xhat(at(i, c, s)) + beta[c]);
    const g = (k: number) => (out[k] > 0 ? dout[k] : 0);
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < S; s++) {
        const k = at(i, c, s);
        dbeta[c] += g(k);
        dgamma[c] += g(k) * xhat(k);
        term = Math.max(term, Math.abs(gamma[c] * inv * dout[k]));
      }
    }
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < S; s++) {
        const k = at(i, c, s);
        dx[k] = ((gamma[c] * inv) / N) * (N * g(k) - dbeta[c] - xhat(k) * dgamma[c]);
      }
    }
  }
  return { out, dx, dgamma, dbeta, term };
}

describe.each(["simd", "scalar"] as Backend[])("%s", (backend) => {
  describe.each(["float32", "float64"] as Dtype[])("%s", (dtype) => {
    const size = dtype === "float64" ? 8 : 4;
    const runS = CHANNEL_RUN_BYTES / size;
    // The shortest runs, with a tail of 3 values past the vectors; runs that fill the budget of
    // a channel; and the first shapes past each threshold (the other path).
    const on: [number, number, number][] = [[3, 5, runS + 3], [CHANNEL_BACKWARD_BYTES / (2 * 2 * runS * size), 2, 2 * runS]];
    const off: [number, number, number][] = [[3, 5, runS - 1], [CHANNEL_BACKWARD_BYTES / (2 * 2 * runS * size) + 1, 2, 2 * runS]];

    test("the thresholds pick the shapes", () => {
      for (const [n, C, S] of on) expect(channelByChannel(dtype, { n, d: C, S })).toBe(true);
      for (const [n, C, S] of off) expect(channelByChannel(dtype, { n, d: C, S })).toBe(false);
    });

    test.each([...on, ...off])("(%i, %i, %i): train backward, both forms", (n, C, S) => {
      initSync({ backend });
      const shape = [n, C, S];
      const x = typed(dtype, randn(n + 7 * S, n * C * S, 1, 2));
      const gamma = typed(dtype, randn(C + 1, C, 0.5, 1));
      const beta = typed(dtype, randn(C + 2, C, 0, 0.5));
      const dout = typed(dtype, randn(S + 3, x.length));
      const { out, cache } = spatialBatchnormForward(x, gamma, beta, { mode: "train", activation: "relu" }, shape);
      const want = reference(x, dout, n, C, S, gamma, beta);
      const tol = tolerance(dtype);
      const u = unitRoundoff(dtype);
      expectClose(out, want.out, tol.abs * Math.max(1, maxAbs(want.out)), "out");
      const plain = spatialBatchnormForward(x, gamma, beta, { mode: "train" }, shape);
      const masked = typed(dtype, Array.from(dout, (v, k) => (out[k] > 0 ? v : 0)));
      const sums = tol.rel + 4 * u * Math.sqrt(n * S);
      for (const form of ["compact", "graph"] as const) {
        const got = form === "graph" ? batchnormBackward(dout, cache) : spatialBatchnormBackward(dout, cache);
        expectClose(got.dx, want.dx, tol.rel * maxAbs(want.dx) + 8 * u * want.term, `${form} dx`);
        expectClose(got.dgamma, want.dgamma, sums * Math.max(1, maxAbs(want.dgamma)), `${form} dgamma`);
        expectClose(got.dbeta, want.dbeta, sums * Math.max(1, maxAbs(want.dbeta)), `${form} dbeta`);
        // The package's batch norm backward of the ReLU's masked dout.
        const composed = (form === "graph" ? batchnormBackward : batchnormBackwardAlt)(masked, plain.cache!);
        expectClose(got.dx, composed.dx, tol.rel * maxAbs(want.dx) + 8 * u * want.term, `${form} dx vs BN backward of ReLU's dout`);
        expectClose(got.dgamma, composed.dgamma, sums * Math.max(1, maxAbs(want.dgamma)), `${form} dgamma vs composed`);
      }
    });

    test("layer without gamma and beta, and eval mode: dx = mask·dout/sqrt(runVar + eps)", () => {
      initSync({ backend });
      const [n, C, S] = on[0];
      const x = typed(dtype, randn(5, n * C * S, 1, 2));
      const dout = typed(dtype, randn(6, x.length));
      const layer = new BatchNorm(C, { dtype, activation: "relu", affine: false });
      const out = layer.forward(x as never, [n, C, S]);
      const ones = new Array(C).fill(1);
      const want = reference(x, dout, n, C, S, ones, new Array(C).fill(0));
      const u = unitRoundoff(dtype);
      const dx = layer.backward(dout as never);
      expectClose(dx, want.dx, tolerance(dtype).rel * maxAbs(want.dx) + 8 * u * want.term, "no-affine dx");
      layer.eval();
      const evalOut = layer.forward(x as never, [n, C, S]);
      const evalDx = layer.backward(dout as never);
      const wantDx = Array.from(dout, (v, k) => {
        const c = Math.floor(k / S) % C;
        return evalOut[k] > 0 ? v / Math.sqrt(layer.runningVar[c] + EPS) : 0;
      });
      expect(out.length).toBe(x.length);
      expectClose(evalDx, wantDx, tolerance(dtype).rel * maxAbs(wantDx), "eval dx");
    });
  });
});
