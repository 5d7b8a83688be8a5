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
