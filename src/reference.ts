// Plain-JavaScript batch normalization on typed arrays: the 'js' backend, the fallback
// where WebAssembly is missing, and the baseline of the benchmarks. Written the idiomatic
// way (two passes, Float64Array accumulators) and kept independent of the WASM kernels'
// numerics (shifted block sums), so the two check each other.
//
// Data is rows (n, d) when S = 1, or channels-first (n, d, S): value s of channel j of item i
// is at (i·d + j)·S + s. Same contracts as the kernels in assembly/.
import type { FloatArray } from "./dtype.js";
import { COMPACT_FORM, EVAL_FORM, GRAPH_FORM } from "./kernels.js";

/** Train-mode forward; running = momentum·running + (1 − momentum)·batch (variance × runVarScale). */
export function forwardTrain(
  x: FloatArray, n: number, d: number, S: number, gamma: FloatArray | null, beta: FloatArray | null,
  eps: number, momentum: number, runVarScale: number, runMean: FloatArray | null, runVar: FloatArray | null,
  out: FloatArray, mean: FloatArray, meanLo: FloatArray, variance: FloatArray, invStd: FloatArray,
): void {
  const count = n * S;
  const mu = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const o = (i * d + j) * S;
      for (let s = 0; s < S; s++) mu[j] += x[o + s];
    }
  }
  for (let j = 0; j < d; j++) mu[j] /= count;
  // Second pass about the first mean, with its correction (the "corrected two-pass" algorithm).
  const s1 = new Float64Array(d);
  const m2 = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const o = (i * d + j) * S;
      for (let s = 0; s < S; s++) {
        const v = x[o + s] - mu[j];
        s1[j] += v;
        m2[j] += v * v;
      }
    }
  }
  const inv = new Float64Array(d);
  // mu + muLo: the mean to twice float64's precision (for float64 data far from zero, mu alone
  // would be off by up to half its ulp, a large error in x − mean when the spread is small).
  const muLo = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    const correction = s1[j] / count;
    const sum = mu[j] + correction;
    muLo[j] = sumError(mu[j], correction, sum);
    mu[j] = sum;
    const v = Math.max(m2[j] / count - correction ** 2, 0);
    inv[j] = 1 / Math.sqrt(v + eps);
    mean[j] = mu[j];
    meanLo[j] = mu[j] - mean[j] + muLo[j];
    variance[j] = v;
    invStd[j] = inv[j];
    if (runMean) runMean[j] = momentum * runMean[j] + (1 - momentum) * mu[j];
    if (runVar) runVar[j] = momentum * runVar[j] + (1 - momentum) * v * runVarScale;
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const o = (i * d + j) * S;
      const g = gamma ? gamma[j] : 1;
      const b = beta ? beta[j] : 0;
      for (let s = 0; s < S; s++) out[o + s] = g * ((x[o + s] - mu[j] - muLo[j]) * inv[j]) + b;
    }
  }
}

/** What a + b loses to rounding: (a + b) + sumError(a, b, a + b) is the exact sum (TwoSum). */
function sumError(a: number, b: number, sum: number): number {
  const back = sum - a;
  return (a - (sum - back)) + (b - back);
}

/** Test-mode forward: out = (x − runMean) · gamma / sqrt(runVar + eps) + beta. */
export function forwardTest(
  x: FloatArray, n: number, d: number, S: number, gamma: FloatArray | null, beta: FloatArray | null,
  eps: number, runMean: FloatArray, runVar: FloatArray, out: FloatArray,
): void {
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const o = (i * d + j) * S;
      const std = Math.sqrt(runVar[j] + eps);
      const g = gamma ? gamma[j] : 1;
      const b = beta ? beta[j] : 0;
      for (let s = 0; s < S; s++) out[o + s] = g * ((x[o + s] - runMean[j]) / std) + b;
    }
  }
}

/**
 * The fused ReLU: out = max(0, y), y = γ·((x − mean − meanLo)·invStd) + β from the saved
 * values (meanLo null: 0), so that reluMasked recomputes the same y from the same arrays.
 */
export function reluForward(
  x: FloatArray, n: number, d: number, S: number, gamma: FloatArray | null, beta: FloatArray | null,
  mean: FloatArray, meanLo: FloatArray | null, invStd: FloatArray, out: FloatArray,
): void {
  const round = roundingOf(out);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const o = (i * d + j) * S;
      for (let s = 0; s < S; s++) out[o + s] = Math.max(0, round(preActivation(x[o + s], j, gamma, beta, mean, meanLo, invStd)));
    }
  }
}

/** dout where reluForward's out > 0, else 0 (PyTorch's ReLU: 0 at 0), as a new array. */
export function reluMasked(
  dout: FloatArray, x: FloatArray, n: number, d: number, S: number, gamma: FloatArray | null, beta: FloatArray | null,
  mean: FloatArray, meanLo: FloatArray | null, invStd: FloatArray,
): FloatArray {
  const round = roundingOf(dout);
  const masked = dout.slice();
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const o = (i * d + j) * S;
      for (let s = 0; s < S; s++) if (!(round(preActivation(x[o + s], j, gamma, beta, mean, meanLo, invStd)) > 0)) masked[o + s] = 0;
    }
  }
  return masked;
}

function preActivation(
  x: number, j: number, gamma: FloatArray | null, beta: FloatArray | null, mean: FloatArray, meanLo: FloatArray | null, invStd: FloatArray,
): number {
  return (gamma ? gamma[j] : 1) * ((x - mean[j] - (meanLo ? meanLo[j] : 0)) * invStd[j]) + (beta ? beta[j] : 0);
}

/** The rounding of a store into `a`: what out > 0 sees. */
const roundingOf = (a: FloatArray): ((v: number) => number) => (a instanceof Float32Array ? Math.fround : (v) => v);

/** Backward forms, as the kernels number them. */
export { COMPACT_FORM, EVAL_FORM, GRAPH_FORM };

/** Backward (cache: x, mean + meanLo, invStd); EVAL_FORM treats the statistics as constants. */
export function backward(
  form: number, dout: FloatArray, x: FloatArray, n: number, d: number, S: number, gamma: FloatArray | null,
  mean: FloatArray, meanLo: FloatArray, invStd: FloatArray,
  dx: FloatArray | null, dgamma: FloatArray | null, dbeta: FloatArray | null,
): void {
  const count = n * S;
  const sumDout = new Float64Array(d);
  const sumDoutXc = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const o = (i * d + j) * S;
      for (let s = 0; s < S; s++) {
        const xc = x[o + s] - mean[j] - meanLo[j];
        sumDout[j] += dout[o + s];
        sumDoutXc[j] += dout[o + s] * xc;
      }
    }
  }
  const g = (j: number) => (gamma ? gamma[j] : 1);
  if (dbeta) for (let j = 0; j < d; j++) dbeta[j] = sumDout[j];
  if (dgamma) for (let j = 0; j < d; j++) dgamma[j] = sumDoutXc[j] * invStd[j];
  if (!dx) return;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const o = (i * d + j) * S;
      const inv = invStd[j];
      if (form === EVAL_FORM) {
        for (let s = 0; s < S; s++) dx[o + s] = dout[o + s] * g(j) * inv;
      } else if (form === GRAPH_FORM) {
        // dx̂ = dout·γ; dvar = Σ dx̂(x−μ)·(−½)invStd³; dmean = −Σ dx̂·invStd + dvar·Σ(−2(x−μ))/N
        // dx = dx̂·invStd + dvar·2(x−μ)/N + dmean/N. Σ(x − μ) is 0 by definition of μ, as in the
        // kernels: summed, it is only rounding error, amplified by dvar (for float64 data with
        // |mean|/std = 1e7, thousands of ulps of dx).
        const sumXc = 0;
        const dVar = g(j) * sumDoutXc[j] * -0.5 * inv * inv * inv;
        const dMean = -g(j) * sumDout[j] * inv + (dVar * (-2 * sumXc)) / count;
        for (let s = 0; s < S; s++) {
          const xc = x[o + s] - mean[j] - meanLo[j];
          dx[o + s] = dout[o + s] * g(j) * inv + (dVar * 2 * xc) / count + dMean / count;
        }
      } else {
        // dx = (γ·invStd/N)·(N·dout − dβ − x̂·dγ)
        const dGamma = sumDoutXc[j] * inv;
        for (let s = 0; s < S; s++) {
          const xHat = (x[o + s] - mean[j] - meanLo[j]) * inv;
          dx[o + s] = ((g(j) * inv) / count) * (count * dout[o + s] - sumDout[j] - xHat * dGamma);
        }
      }
    }
  }
}

/**
 * The kernels' checksum (assembly/checksum.ts) in plain JavaScript: Fletcher's sums of u32
 * words in four lanes, word k of `words` being word first + k of the run; state: s1, then s2.
 */
export function checksum(words: Uint32Array, first: number, state: Uint32Array): void {
  for (let k = 0; k < words.length; k++) {
    const lane = (first + k) & 3;
    state[lane] = (state[lane] + words[k]) >>> 0;
    state[lane + 4] = (state[lane + 4] + state[lane]) >>> 0;
  }
}

/** out = (x − center)·scale + bias per column: a normalization with given (merged) statistics. */
export function affine(
  x: FloatArray, n: number, d: number, S: number, center: FloatArray, scale: FloatArray, bias: FloatArray, out: FloatArray,
): void {
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const o = (i * d + j) * S;
      for (let s = 0; s < S; s++) out[o + s] = (x[o + s] - center[j]) * scale[j] + bias[j];
    }
  }
}

/** dx = a·((dout − m) − b·(x − mean)) per column: a backward with given (summed) sums. */
export function applyBackwardMap(
  dout: FloatArray, x: FloatArray, n: number, d: number, S: number, mean: FloatArray,
  a: FloatArray, m: FloatArray, b: FloatArray, dx: FloatArray,
): void {
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const o = (i * d + j) * S;
      for (let s = 0; s < S; s++) dx[o + s] = a[j] * ((dout[o + s] - m[j]) - b[j] * (x[o + s] - mean[j]));
    }
  }
}
