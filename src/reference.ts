// Plain-JavaScript batch normalization on typed arrays: the 'js' backend, the fallback
// where WebAssembly is missing, and the baseline of the benchmarks. Written the idiomatic
// way (two passes, Float64Array accumulators) and kept independent of the WASM kernels'
// numerics (shifted block sums), so the two check each other.
import type { FloatArray } from "./dtype.js";

/** Train-mode forward on row-major (n, d) x; same contract as the WASM kernel forwardTrain. */
export function forwardTrain(
  x: FloatArray, n: number, d: number, gamma: FloatArray | null, beta: FloatArray | null,
  eps: number, momentum: number, runMean: FloatArray | null, runVar: FloatArray | null,
  out: FloatArray, mean: FloatArray, meanLo: FloatArray, variance: FloatArray, invStd: FloatArray,
): void {
  const mu = new Float64Array(d);
  const m2 = new Float64Array(d);
  for (let r = 0; r < n; r++) {
    const o = r * d;
    for (let j = 0; j < d; j++) mu[j] += x[o + j];
  }
  for (let j = 0; j < d; j++) mu[j] /= n;
  // Second pass about the first mean, with its correction (the "corrected two-pass" algorithm).
  const s1 = new Float64Array(d);
  for (let r = 0; r < n; r++) {
    const o = r * d;
    for (let j = 0; j < d; j++) {
      const v = x[o + j] - mu[j];
      s1[j] += v;
      m2[j] += v * v;
    }
  }
  const inv = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    mu[j] += s1[j] / n;
    const v = Math.max(m2[j] / n - (s1[j] / n) ** 2, 0);
    inv[j] = 1 / Math.sqrt(v + eps);
    mean[j] = mu[j];
    meanLo[j] = mu[j] - mean[j];
    variance[j] = v;
    invStd[j] = inv[j];
    if (runMean) runMean[j] = momentum * runMean[j] + (1 - momentum) * mu[j];
    if (runVar) runVar[j] = momentum * runVar[j] + (1 - momentum) * v;
  }
  for (let r = 0; r < n; r++) {
    const o = r * d;
    for (let j = 0; j < d; j++) {
      const xHat = (x[o + j] - mu[j]) * inv[j];
      out[o + j] = (gamma ? gamma[j] : 1) * xHat + (beta ? beta[j] : 0);
    }
  }
}

/** Test-mode forward: out = (x − runMean) · gamma / sqrt(runVar + eps) + beta. */
export function forwardTest(
  x: FloatArray, n: number, d: number, gamma: FloatArray | null, beta: FloatArray | null,
  eps: number, runMean: FloatArray, runVar: FloatArray, out: FloatArray,
): void {
  for (let r = 0; r < n; r++) {
    const o = r * d;
    for (let j = 0; j < d; j++) {
      const xHat = (x[o + j] - runMean[j]) / Math.sqrt(runVar[j] + eps);
      out[o + j] = (gamma ? gamma[j] : 1) * xHat + (beta ? beta[j] : 0);
    }
  }
}

export const GRAPH_FORM = 0;
export const COMPACT_FORM = 1;

/** Backward of a train-mode forward (cache: x, mean + meanLo, invStd); same contract as the kernel. */
export function backward(
  form: number, dout: FloatArray, x: FloatArray, n: number, d: number, gamma: FloatArray | null,
  mean: FloatArray, meanLo: FloatArray, invStd: FloatArray,
  dx: FloatArray | null, dgamma: FloatArray | null, dbeta: FloatArray | null,
): void {
  const sumDout = new Float64Array(d);
  const sumDoutXc = new Float64Array(d);
  const sumXc = new Float64Array(d);
  for (let r = 0; r < n; r++) {
    const o = r * d;
    for (let j = 0; j < d; j++) {
      const xc = x[o + j] - mean[j] - meanLo[j];
      sumDout[j] += dout[o + j];
      sumDoutXc[j] += dout[o + j] * xc;
      sumXc[j] += xc;
    }
  }
  const g = (j: number) => (gamma ? gamma[j] : 1);
  if (dbeta) for (let j = 0; j < d; j++) dbeta[j] = sumDout[j];
  if (dgamma) for (let j = 0; j < d; j++) dgamma[j] = sumDoutXc[j] * invStd[j];
  if (!dx) return;
  if (form === GRAPH_FORM) {
    // dx̂ = dout·γ; dvar = Σ dx̂(x−μ)·(−½)invStd³; dmean = −Σ dx̂·invStd + dvar·Σ(−2(x−μ))/N
    // dx = dx̂·invStd + dvar·2(x−μ)/N + dmean/N
    const dVar = new Float64Array(d);
    const dMean = new Float64Array(d);
    for (let j = 0; j < d; j++) {
      const inv = invStd[j];
      dVar[j] = g(j) * sumDoutXc[j] * -0.5 * inv * inv * inv;
      dMean[j] = -g(j) * sumDout[j] * inv + (dVar[j] * (-2 * sumXc[j])) / n;
    }
    for (let r = 0; r < n; r++) {
      const o = r * d;
      for (let j = 0; j < d; j++) {
        const xc = x[o + j] - mean[j] - meanLo[j];
        dx[o + j] = dout[o + j] * g(j) * invStd[j] + (dVar[j] * 2 * xc) / n + dMean[j] / n;
      }
    }
  } else {
    // dx = (γ·invStd/N)·(N·dout − dβ − x̂·dγ)
    for (let r = 0; r < n; r++) {
      const o = r * d;
      for (let j = 0; j < d; j++) {
        const inv = invStd[j];
        const xHat = (x[o + j] - mean[j] - meanLo[j]) * inv;
        const dGamma = sumDoutXc[j] * inv;
        dx[o + j] = ((g(j) * inv) / n) * (n * dout[o + j] - sumDout[j] - xHat * dGamma);
      }
    }
  }
}
