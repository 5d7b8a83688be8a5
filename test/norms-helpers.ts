// Helpers of the LayerNorm / GroupNorm / InstanceNorm tests: the PyTorch fixtures
// (scripts/fixtures-norms.py), a finite-difference gradient, and the tolerances.
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

/**
 * A gradient within rel·max|want| plus a few roundings of `term`, the largest term it is the
 * cancelling sum of (dx: |γ·invStd·dout|; dgamma, dbeta: Σ|dout·x̂| and Σ|dout|).
 */
export function expectGradClose(dtype: "float32" | "float64", got: ArrayLike<number>, want: ArrayLike<number>, term: number, what: string) {
  expectClose(got, want, tolerance(dtype).rel * maxAbs(want) + 16 * unitRoundoff(dtype) * term, what);
}
