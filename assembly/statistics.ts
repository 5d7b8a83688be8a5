// Per-column mean and biased variance of a row-major (n, d) array.
//
// Numerics: a one-pass E[x²] − E[x]² loses every digit when |mean| >> std, and a plain f32
// running sum of x drifts. We sum shifted values v = x − c instead, with c close to the mean:
// - c starts as the mean of the first ROW_BLOCK rows, so |mean − c| is a fraction of a std;
// - v and v² are summed in T over blocks of ROW_BLOCK rows (full SIMD width for f32), and
//   each block's partial sums are added into f64 accumulators, so the rounding error is that
//   of ROW_BLOCK terms in T plus n/ROW_BLOCK terms in f64;
// - var = S2/n − (S1/n)² then cancels only (mean − c)² against var; if that ratio is large
//   for any column (c was a poor guess, e.g. sorted data), a second pass with c = mean
//   makes it negligible. Typical data needs one pass.
import { ROW_BLOCK, lanes, at, addToF64, zeroF64 } from "./columns";

/** s1[j] = Σ_r (x[r, j] − c[j]), s2[j] = Σ_r (x[r, j] − c[j])², accumulated as described above. */
function shiftedSums<T>(x: usize, n: i32, d: i32, c: usize, s1: usize, s2: usize): void {
  zeroF64(s1, d);
  zeroF64(s2, d);
  const rowBytes = <usize>d * sizeof<T>();
  for (let r0 = 0; r0 < n; r0 += ROW_BLOCK) {
    const rows = min(ROW_BLOCK, n - r0);
    const block = x + <usize>r0 * rowBytes;
    let j = 0;
    if (ASC_FEATURE_SIMD) {
      const L = lanes<T>();
      for (; j + L <= d; j += L) {
        const cj = v128.load(at<T>(c, j));
        let a1 = v128.splat<T>(<T>0);
        let a2 = v128.splat<T>(<T>0);
        let p = at<T>(block, j);
        for (let r = 0; r < rows; r++, p += rowBytes) {
          const v = v128.sub<T>(v128.load(p), cj);
          a1 = v128.add<T>(a1, v);
          a2 = v128.add<T>(a2, v128.mul<T>(v, v));
        }
        addToF64<T>(at<f64>(s1, j), a1);
        addToF64<T>(at<f64>(s2, j), a2);
      }
    }
    for (; j < d; j++) {
      const cj = load<T>(at<T>(c, j));
      let a1: T = 0;
      let a2: T = 0;
      let p = at<T>(block, j);
      for (let r = 0; r < rows; r++, p += rowBytes) {
        const v: T = load<T>(p) - cj;
        a1 += v;
        a2 += v * v;
      }
      store<f64>(at<f64>(s1, j), load<f64>(at<f64>(s1, j)) + <f64>a1);
      store<f64>(at<f64>(s2, j), load<f64>(at<f64>(s2, j)) + <f64>a2);
    }
  }
}

/** Shifts with (mean − c)² above this multiple of var get a second pass. */
const RESHIFT_RATIO: f64 = 3.0;

/**
 * mean[j] and variance[j] (f64, biased) of the columns of x (n ≥ 1 rows).
 * work: d values of T for the shift.
 */
export function columnMeanVar<T>(x: usize, n: i32, d: i32, mean: usize, variance: usize, work: usize): void {
  const c = work;
  // Initial shift: mean of the first rows, themselves shifted by row 0.
  const head = min(n, ROW_BLOCK);
  shiftedSums<T>(x, head, d, x, mean, variance);
  for (let j = 0; j < d; j++) {
    store<T>(at<T>(c, j), <T>(<f64>load<T>(at<T>(x, j)) + load<f64>(at<f64>(mean, j)) / <f64>head));
  }
  for (let pass = 0; pass < 2; pass++) {
    shiftedSums<T>(x, n, d, c, mean, variance);
    let reshift = false;
    for (let j = 0; j < d; j++) {
      const m = load<f64>(at<f64>(mean, j)) / <f64>n;
      const v = max(load<f64>(at<f64>(variance, j)) / <f64>n - m * m, 0.0);
      const mu = <f64>load<T>(at<T>(c, j)) + m;
      store<f64>(at<f64>(mean, j), mu);
      store<f64>(at<f64>(variance, j), v);
      if (m * m > RESHIFT_RATIO * v) reshift = true;
      store<T>(at<T>(c, j), <T>mu);
    }
    if (!reshift) break;
  }
}
