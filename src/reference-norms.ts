// Plain-JavaScript LayerNorm / GroupNorm / InstanceNorm kernels: the 'js' backend and the
// benchmarks' baseline. Data (n, G, K, S), contiguous (see GroupShape in kernels.ts): the
// statistic q = i·G + g covers the K·S values from q·K·S on; channel c = g·K + k owns the run
// of S values at (q·K + k)·S. Written the plain way (two passes in float64), independent of
// the kernels' blocked sums.
import type { FloatArray } from "./dtype.js";

/** What a + b loses to rounding: (a + b) + sumError(a, b, a + b) is the exact sum (TwoSum). */
function sumError(a: number, b: number, sum: number): number {
  const back = sum - a;
  return (a - (sum - back)) + (b - back);
}

/**
 * Statistics per (item, group) and out = x̂·gamma[c] + beta[c]; mean + meanLo is the mean to
 * twice the input's precision (mean is rounded to the input's type, meanLo holds the rest).
 */
export function groupForward(
  x: FloatArray, n: number, G: number, K: number, S: number, gamma: FloatArray, beta: FloatArray, eps: number,
  out: FloatArray, mean: FloatArray, meanLo: FloatArray, variance: FloatArray, invStd: FloatArray,
): void {
  const count = K * S;
  for (let q = 0; q < n * G; q++) {
    const o = q * count;
    let sum = 0;
    for (let e = 0; e < count; e++) sum += x[o + e];
    const mu = sum / count;
    // Second pass about the first mean, with its correction (the "corrected two-pass" algorithm).
    let s1 = 0;
    let m2 = 0;
    for (let e = 0; e < count; e++) {
      const v = x[o + e] - mu;
      s1 += v;
      m2 += v * v;
    }
    const correction = s1 / count;
    const full = mu + correction;
    const lo = sumError(mu, correction, full);
    const v = Math.max(m2 / count - correction ** 2, 0);
    const inv = 1 / Math.sqrt(v + eps);
    mean[q] = full;
    meanLo[q] = full - mean[q] + lo;
    variance[q] = v;
    invStd[q] = inv;
    const c0 = (q % G) * K;
    for (let k = 0; k < K; k++) {
      const g = gamma[c0 + k];
      const b = beta[c0 + k];
      const r = o + k * S;
      for (let s = 0; s < S; s++) out[r + s] = g * ((x[r + s] - full - lo) * inv) + b;
    }
  }
}

/**
 * dbeta[c] = Σ dout, dgamma[c] = Σ dout·x̂; dx = invStd·(g − mean(g) − x̂·mean(g·x̂)) with
 * g = dout·gamma, the means over each statistic's values. dx null: not computed.
 */
export function groupBackward(
  dout: FloatArray, x: FloatArray, n: number, G: number, K: number, S: number,
  mean: FloatArray, meanLo: FloatArray, invStd: FloatArray, gamma: FloatArray,
  dx: FloatArray | null, dgamma: FloatArray | null, dbeta: FloatArray | null,
): void {
  const C = G * K;
  const count = K * S;
  const dg = new Float64Array(C);
  const db = new Float64Array(C);
  for (let q = 0; q < n * G; q++) {
    const o = q * count;
    const c0 = (q % G) * K;
    const inv = invStd[q];
    let sumG = 0;
    let sumGXHat = 0;
    for (let k = 0; k < K; k++) {
      const r = o + k * S;
      for (let s = 0; s < S; s++) {
        const xHat = (x[r + s] - mean[q] - meanLo[q]) * inv;
        const d = dout[r + s];
        db[c0 + k] += d;
        dg[c0 + k] += d * xHat;
        sumG += d * gamma[c0 + k];
        sumGXHat += d * gamma[c0 + k] * xHat;
      }
    }
    if (!dx) continue;
    for (let k = 0; k < K; k++) {
      const r = o + k * S;
      for (let s = 0; s < S; s++) {
        const xHat = (x[r + s] - mean[q] - meanLo[q]) * inv;
        dx[r + s] = inv * (dout[r + s] * gamma[c0 + k] - sumG / count - xHat * (sumGXHat / count));
      }
    }
  }
  if (dgamma) for (let c = 0; c < C; c++) dgamma[c] = dg[c];
  if (dbeta) for (let c = 0; c < C; c++) dbeta[c] = db[c];
}
