// Helpers of the LayerNorm / GroupNorm / InstanceNorm tests: the PyTorch fixtures
// (scripts/fixtures-norms.py) and the tolerances.
import norms from "./fixtures/norms.json" with { type: "json" };
import { expectClose, maxAbs, tolerance, unitRoundoff } from "./helpers.js";

export interface NormCase {
  name: string; dtype: "float32" | "float64"; shape: number[]; eps: number;
  x: number[]; gamma: number[]; beta: number[]; dout: number[];
  out: number[]; dx: number[]; dgamma: number[]; dbeta: number[];
  G?: number; momentum?: number; runningMean?: number[]; runningVar?: number[]; xEval?: number[]; outEval?: number[];
}

// Imported as a module (not read from disk) so the same tests run in Node and in Chromium.
export const normFixtures = norms as unknown as { layer: NormCase[]; group: NormCase[]; instance: NormCase[] };


/** (N, C, S) values into (N, S, C) order, a plain loop. */
export function toChannelsLast(a: ArrayLike<number>, N: number, C: number, S: number): number[] {
  const out = new Array<number>(N * C * S);
  for (let i = 0; i < N; i++) for (let c = 0; c < C; c++) for (let s = 0; s < S; s++) out[(i * S + s) * C + c] = a[(i * C + c) * S + s];
  return out;
}

/** Channels-last (N, S, C) values into (N, C, S) order, a plain loop. */
export function toChannelsFirst(a: ArrayLike<number>, N: number, C: number, S: number): number[] {
  const out = new Array<number>(N * C * S);
  for (let i = 0; i < N; i++) for (let s = 0; s < S; s++) for (let c = 0; c < C; c++) out[(i * C + c) * S + s] = a[(i * S + s) * C + c];
  return out;
}

/**
 * Terms of the gradients' sums (see expectGradClose) of channels-first (N, G, K, S) data in
 * float64 with statistics per (item, group): the largest |γ·invStd·dout|, and per channel
 * Σ|dout|·(|x − mean| + |x|)·invStd and Σ|dout| (the largest of each). gamma null: ones.
 */
export function groupTerms(x: ArrayLike<number>, gamma: ArrayLike<number> | null, dout: ArrayLike<number>, N: number, G: number, K: number, S: number, eps: number) {
  let dx = 0;
  const dg = new Float64Array(G * K);
  const db = new Float64Array(G * K);
  for (let i = 0; i < N; i++) {
    for (let g = 0; g < G; g++) {
      const o = (i * G + g) * K * S;
      let m = 0;
      for (let e = 0; e < K * S; e++) m += x[o + e] / (K * S);
      let v = 0;
      for (let e = 0; e < K * S; e++) v += (x[o + e] - m) ** 2 / (K * S);
      const inv = 1 / Math.sqrt(v + eps);
      for (let e = 0; e < K * S; e++) {
        const c = g * K + Math.floor(e / S);
        dx = Math.max(dx, Math.abs((gamma ? gamma[c] : 1) * inv * dout[o + e]));
        // x̂ and the rounding of x − mean, whose error is relative to |x|.
        dg[c] += Math.abs(dout[o + e]) * (Math.abs(x[o + e] - m) + Math.abs(x[o + e])) * inv;
        db[c] += Math.abs(dout[o + e]);
      }
    }
  }
  return { dx, dgamma: maxAbs(dg), dbeta: maxAbs(db) };
}

/**
 * A gradient within rel·max|want| plus a few roundings of `term`, the largest term it is the
 * cancelling sum of (dx: |γ·invStd·dout|; dgamma, dbeta: Σ|dout·x̂| and Σ|dout|).
 */
export function expectGradClose(dtype: "float32" | "float64", got: ArrayLike<number>, want: ArrayLike<number>, term: number, what: string) {
  expectClose(got, want, tolerance(dtype).rel * maxAbs(want) + 16 * unitRoundoff(dtype) * term, what);
}

interface NormResults { out: ArrayLike<number>; dx: ArrayLike<number>; dgamma: ArrayLike<number>; dbeta: ArrayLike<number> }

/** Each WebAssembly backend's results against the js backend's, dx, dgamma and dbeta within expectGradClose of their terms. */
export function expectBackendsAgree(
  dtype: "float32" | "float64", run: (backend: "simd" | "scalar" | "js") => NormResults,
  terms: { dx: number; dgamma: number; dbeta: number },
) {
  const js = run("js");
  for (const backend of ["simd", "scalar"] as const) {
    const got = run(backend);
    expectClose(got.out, js.out, tolerance(dtype).abs, `${backend} out`);
    expectGradClose(dtype, got.dx, js.dx, terms.dx, `${backend} dx`);
    expectGradClose(dtype, got.dgamma, js.dgamma, terms.dgamma, `${backend} dgamma`);
    expectGradClose(dtype, got.dbeta, js.dbeta, terms.dbeta, `${backend} dbeta`);
  }
}
