// Backward pass to dx, dgamma, dbeta from dout and the forward cache (x, mean, invStd).
//
// Both forms of the CS231n derivation need the same two sweeps over memory:
//   1. column sums Σ dout, Σ dout·(x − μ), Σ (x − μ);
//   2. dx = a·((dout − m) − b·(x − μ)) with per-column a, m, b.
// They differ in how a, m, b follow from the sums (the O(d) algebra in `backward`):
// the graph form goes through dx̂, dvar and dmean node by node; the compact form uses
// dx = (γ·invStd / N)·(N·dout − dβ − x̂·dγ).
import { ROW_BLOCK, lanes, at, addToF64, zeroF64 } from "./columns";

/** sDout = Σ dout, sDoutX = Σ dout·(x − c), sX = Σ (x − c) per column, in f64. */
function backwardSums<T>(
  dout: usize, x: usize, n: i32, d: i32, c: usize, sDout: usize, sDoutX: usize, sX: usize,
): void {
  zeroF64(sDout, d);
  zeroF64(sDoutX, d);
  zeroF64(sX, d);
  const rowBytes = <usize>d * sizeof<T>();
  for (let r0 = 0; r0 < n; r0 += ROW_BLOCK) {
    const rows = min(ROW_BLOCK, n - r0);
    const offset = <usize>r0 * rowBytes;
    let j = 0;
    if (ASC_FEATURE_SIMD) {
      const L = lanes<T>();
      for (; j + L <= d; j += L) {
        const cj = v128.load(at<T>(c, j));
        let a0 = v128.splat<T>(<T>0);
        let a1 = v128.splat<T>(<T>0);
        let a2 = v128.splat<T>(<T>0);
        let p = at<T>(offset, j);
        for (let r = 0; r < rows; r++, p += rowBytes) {
          const g = v128.load(dout + p);
          const v = v128.sub<T>(v128.load(x + p), cj);
          a0 = v128.add<T>(a0, g);
          a1 = v128.add<T>(a1, v128.mul<T>(g, v));
          a2 = v128.add<T>(a2, v);
        }
        addToF64<T>(at<f64>(sDout, j), a0);
        addToF64<T>(at<f64>(sDoutX, j), a1);
        addToF64<T>(at<f64>(sX, j), a2);
      }
    }
    for (; j < d; j++) {
      const cj = load<T>(at<T>(c, j));
      let a0: T = 0;
      let a1: T = 0;
      let a2: T = 0;
      let p = at<T>(offset, j);
      for (let r = 0; r < rows; r++, p += rowBytes) {
        const g = load<T>(dout + p);
        const v: T = load<T>(x + p) - cj;
        a0 += g;
        a1 += g * v;
        a2 += v;
      }
      store<f64>(at<f64>(sDout, j), load<f64>(at<f64>(sDout, j)) + <f64>a0);
      store<f64>(at<f64>(sDoutX, j), load<f64>(at<f64>(sDoutX, j)) + <f64>a1);
      store<f64>(at<f64>(sX, j), load<f64>(at<f64>(sX, j)) + <f64>a2);
    }
  }
}

/**
 * dx[r, j] = a[j]·((dout[r, j] − m[j]) − b[j]·(x[r, j] − c[j])).
 * Centering dout before scaling keeps the cancellation in N·dout − Σdout exact for N = 1, 2.
 */
function backwardApply<T>(
  dout: usize, x: usize, n: i32, d: i32, c: usize, a: usize, m: usize, b: usize, dx: usize,
): void {
  const rowBytes = <usize>d * sizeof<T>();
  for (let r = 0; r < n; r++) {
    const offset = <usize>r * rowBytes;
    let j = 0;
    if (ASC_FEATURE_SIMD) {
      const L = lanes<T>();
      for (; j + L <= d; j += L) {
        const p = at<T>(offset, j);
        const xc = v128.sub<T>(v128.load(x + p), v128.load(at<T>(c, j)));
        const g = v128.sub<T>(v128.load(dout + p), v128.load(at<T>(m, j)));
        const t = v128.sub<T>(g, v128.mul<T>(v128.load(at<T>(b, j)), xc));
        v128.store(dx + p, v128.mul<T>(v128.load(at<T>(a, j)), t));
      }
    }
    for (; j < d; j++) {
      const p = at<T>(offset, j);
      const xc: T = load<T>(x + p) - load<T>(at<T>(c, j));
      const g: T = load<T>(dout + p) - load<T>(at<T>(m, j));
      store<T>(dx + p, load<T>(at<T>(a, j)) * (g - load<T>(at<T>(b, j)) * xc));
    }
  }
}

export const GRAPH_FORM = 0;
export const COMPACT_FORM = 1;

/**
 * Backward for a train-mode forward whose cache holds x, mean + meanLo and invStd.
 * Writes dx, dgamma, dbeta (either may be 0 to skip). gamma = 0 means gamma = 1.
 * work: 3·d f64 followed by 3·d T, 16-byte aligned.
 */
export function backward<T>(
  form: i32, dout: usize, x: usize, n: i32, d: i32,
  gamma: usize, mean: usize, meanLo: usize, invStd: usize,
  dx: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  const sDout = work;
  const sDoutX = at<f64>(work, d);
  const sX = at<f64>(work, 2 * d);
  const a = at<f64>(work, 3 * d);
  const m = at<T>(a, d);
  const b = at<T>(m, d);
  backwardSums<T>(dout, x, n, d, mean, sDout, sDoutX, sX);
  const N = <f64>n;
  for (let j = 0; j < d; j++) {
    const g: f64 = gamma ? <f64>load<T>(at<T>(gamma, j)) : 1.0;
    const inv = <f64>load<T>(at<T>(invStd, j));
    const lo = <f64>load<T>(at<T>(meanLo, j));
    // Sums about the exact mean μ = mean + meanLo.
    const sumDout = load<f64>(at<f64>(sDout, j));
    const sumDoutXc = load<f64>(at<f64>(sDoutX, j)) - lo * sumDout;
    const sumXc = load<f64>(at<f64>(sX, j)) - lo * N;
    const dBeta = sumDout;
    const dGamma = sumDoutXc * inv;
    // dx = ca·dout + cb·(x − μ) + ck, written as a·((dout − mk) − mb·(x − μ)).
    let ca: f64, cb: f64, ck: f64;
    if (form == GRAPH_FORM) {
      // x̂ = (x − μ)·invStd, out = γ·x̂ + β
      // dx̂ = dout·γ
      // dvar = Σ dx̂·(x − μ) · (−½)·invStd³
      // dmean = −Σ dx̂·invStd + dvar · Σ(−2(x − μ)) / N
      // dx = dx̂·invStd + dvar·2(x − μ)/N + dmean/N
      const dVar = g * sumDoutXc * -0.5 * inv * inv * inv;
      const dMean = -g * sumDout * inv + dVar * (-2.0 * sumXc) / N;
      ca = g * inv;
      cb = 2.0 * dVar / N;
      ck = dMean / N;
    } else {
      // dx = (γ·invStd/N)·(N·dout − dβ − x̂·dγ), x̂ = (x − μ)·invStd
      const f = g * inv / N;
      ca = f * N;
      cb = -f * dGamma * inv;
      ck = -f * dBeta;
    }
    const mk = ca != 0 ? -ck / ca : 0.0;
    const mb = ca != 0 ? -cb / ca : 0.0;
    // The kernel subtracts `mean`, not μ: (x − μ) = (x − mean) − lo.
    store<T>(at<T>(a, j), <T>ca);
    store<T>(at<T>(m, j), <T>(mk - mb * lo));
    store<T>(at<T>(b, j), <T>mb);
    if (dgamma) store<T>(at<T>(dgamma, j), <T>dGamma);
    if (dbeta) store<T>(at<T>(dbeta, j), <T>dBeta);
  }
  if (dx) backwardApply<T>(dout, x, n, d, mean, a, m, b, dx);
}
