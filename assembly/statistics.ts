// Per-column mean and biased variance of a row-major (n, d) array (or per channel of
// channels-first (n, d, S) data, at the end of this file).
//
// Numerics: a one-pass E[x²] − E[x]² loses every digit when |mean| >> std, and a plain f32
// running sum of x drifts. We sum shifted values v = x − c instead, with c close to the mean:
// - c starts as the mean of the first HEAD_ROWS rows, so |mean − c| is a fraction of a std;
// - v and v² are summed in T over blocks of ROW_BLOCK rows or groups (full SIMD width for
//   f32; 32 narrow groups, see blockGroups; groups of 4 KiB and more through the streaming
//   loop, 16 per block, 32 for inputs beyond the caches (STREAM_BLOCK), in additions of
//   four), and each block's partial sums are added into f64 accumulators, so the rounding
//   error is that of at most 32 terms in T plus n/8 terms in f64;
// - var = S2/n − (S1/n)² then cancels only (mean − c)² against var; if that ratio is large
//   for any column (c was a poor guess, e.g. sorted data), a second pass with c = mean
//   makes it negligible. Typical data needs one pass over memory.
import { lanes, at, addToF64, addLanesToF64x2, foldPartials, zeroF64, groupLength, patternOf, partialsOf, foldPattern, loadTwo, storeTwo } from "./columns";
import { ROW_BLOCK, blockGroups, foldBlock, streams, streamsStatistics } from "./tuning";
import { after } from "./work";

/** SIMD: p1[e] += Σ_g (x[g, e] − cPat[e]), p2[e] += Σ_g (x[g, e] − cPat[e])² over `groups` groups of E values. */
function shiftedSumsGroups<T>(x: usize, groups: i32, E: i32, cPat: usize, p1: usize, p2: usize): void {
  const L = lanes<T>();
  const P = E / L;
  const groupBytes = <usize>E * sizeof<T>();
  const accBytes = <usize>L << 3;
  const zero = v128.splat<T>(<T>0);
  const blockRows = blockGroups(groupBytes, 1);
  for (let g0 = 0; g0 < groups; g0 += blockRows) {
    const rows = min(blockRows, groups - g0);
    const block = x + <usize>g0 * groupBytes;
    // Two vectors (groupLength makes their count even) of two rows per step: four independent
    // chains and no more than 14 live vector registers (x64 has 16; one more and V8 keeps an
    // accumulator on the stack).
    const pairs = rows >> 1;
    for (let k = 0; k < P; k += 2) {
      const off = <usize>k << 4;
      const c0 = v128.load(cPat + off);
      const c1 = v128.load(cPat + off, 16);
      let a0 = zero, a1 = zero, a2 = zero, a3 = zero;
      let b0 = zero, b1 = zero, b2 = zero, b3 = zero;
      let p = block + off;
      for (let r = 0; r < pairs; r++, p += 2 * groupBytes) {
        const q = p + groupBytes;
        const v0 = v128.sub<T>(v128.load(p), c0);
        const v1 = v128.sub<T>(v128.load(p, 16), c1);
        const v2 = v128.sub<T>(v128.load(q), c0);
        const v3 = v128.sub<T>(v128.load(q, 16), c1);
        a0 = v128.add<T>(a0, v0);
        a1 = v128.add<T>(a1, v1);
        a2 = v128.add<T>(a2, v2);
        a3 = v128.add<T>(a3, v3);
        b0 = v128.add<T>(b0, v128.mul<T>(v0, v0));
        b1 = v128.add<T>(b1, v128.mul<T>(v1, v1));
        b2 = v128.add<T>(b2, v128.mul<T>(v2, v2));
        b3 = v128.add<T>(b3, v128.mul<T>(v3, v3));
      }
      if (rows & 1) {
        const v0 = v128.sub<T>(v128.load(p), c0);
        const v1 = v128.sub<T>(v128.load(p, 16), c1);
        a0 = v128.add<T>(a0, v0);
        a1 = v128.add<T>(a1, v1);
        b0 = v128.add<T>(b0, v128.mul<T>(v0, v0));
        b1 = v128.add<T>(b1, v128.mul<T>(v1, v1));
      }
      const q1 = at<f64>(p1, k * L);
      const q2 = at<f64>(p2, k * L);
      addToF64<T>(q1, v128.add<T>(a0, a2));
      addToF64<T>(q1 + accBytes, v128.add<T>(a1, a3));
      addToF64<T>(q2, v128.add<T>(b0, b2));
      addToF64<T>(q2 + accBytes, v128.add<T>(b1, b3));
    }
  }
}

/**
 * SIMD, for inputs too large for cache (streams()), and for groups too wide for blocks of
 * them to stay in L1: the same sums as shiftedSumsGroups, walking the groups in memory order
 * with the block's partial sums in T kept in memory (t1, t2: E values each), instead of
 * visiting ROW_BLOCK rows chunk by chunk, which spreads the reads over ROW_BLOCK pages at
 * once. Four groups a quarter of the input apart go together (g, g + q, g + 2q, g + 3q): one
 * load of the shift and of the partial sums serves four, which counts most where the rows of
 * partial sums do not stay in L1. The one to three groups left go through shiftedSumsGroups.
 * `block`: groups per fold into f64 (foldBlock). Measurements, and the variants tried:
 * docs/tuning.md (SPREAD_SUM_BYTES, STREAM_STATISTICS_BYTES).
 */
function shiftedSumsStream<T>(x: usize, groups: i32, E: i32, cPat: usize, t1: usize, t2: usize, p1: usize, p2: usize, block: i32): void {
  const groupBytes = <usize>E * sizeof<T>();
  const quads = groups >> 2;
  const far = <usize>quads * groupBytes;
  for (let g0 = 0; g0 < quads; g0 += block >> 2) {
    const end = x + <usize>min(g0 + (block >> 2), quads) * groupBytes;
    memory.fill(t1, 0, groupBytes);
    memory.fill(t2, 0, groupBytes);
    for (let p = x + <usize>g0 * groupBytes; p < end; p += groupBytes) {
      for (let off: usize = 0; off < groupBytes; off += 16) {
        const c = v128.load(cPat + off);
        const q = p + off;
        const v0 = v128.sub<T>(v128.load(q), c);
        const v1 = v128.sub<T>(v128.load(q + far), c);
        const v2 = v128.sub<T>(v128.load(q + 2 * far), c);
        const v3 = v128.sub<T>(v128.load(q + 3 * far), c);
        v128.store(t1 + off, v128.add<T>(v128.load(t1 + off), v128.add<T>(v128.add<T>(v0, v1), v128.add<T>(v2, v3))));
        const s01 = v128.add<T>(v128.mul<T>(v0, v0), v128.mul<T>(v1, v1));
        const s23 = v128.add<T>(v128.mul<T>(v2, v2), v128.mul<T>(v3, v3));
        v128.store(t2 + off, v128.add<T>(v128.load(t2 + off), v128.add<T>(s01, s23)));
      }
    }
    foldPartials<T>(t1, t2, groupBytes, p1, p2);
  }
  shiftedSumsGroups<T>(x + 4 * far, groups - 4 * quads, E, cPat, p1, p2);
}

/** Row by row: adds Σ (x[r, j] − c[j]) and Σ (x[r, j] − c[j])² over rows [r0, n) into s1[j], s2[j]. */
function shiftedSumsRows<T>(x: usize, r0: i32, n: i32, d: i32, c: usize, s1: usize, s2: usize): void {
  const rowBytes = <usize>d * sizeof<T>();
  for (; r0 < n; r0 += ROW_BLOCK) {
    const rows = min(ROW_BLOCK, n - r0);
    const block = x + <usize>r0 * rowBytes;
    for (let j = 0; j < d; j++) {
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

/**
 * s1[j] = Σ_r (x[r, j] − c[j]), s2[j] = Σ_r (x[r, j] − c[j])² (f64).
 * scratch: groupLength<T>(d) values of T and 2·groupLength f64.
 */
export function shiftedSums<T>(x: usize, n: i32, d: i32, c: usize, s1: usize, s2: usize, scratch: usize): void {
  zeroF64(s1, d);
  zeroF64(s2, d);
  let r0 = 0;
  if (ASC_FEATURE_SIMD) {
    const E = groupLength<T>(d);
    const groups = <i32>((<i64>n * d) / E);
    if (groups > 0) {
      const patBytes = <usize>E * sizeof<T>();
      const cPat = patternOf<T>(c, d, E, scratch);
      const q1 = after(scratch, patBytes);
      const q2 = after(q1, <usize>E << 3);
      const p1 = partialsOf(s1, d, E, q1);
      const p2 = partialsOf(s2, d, E, q2);
      // Stream wide groups only: a block of narrow groups is contiguous already. Groups of
      // 4 KiB and more stream in cache too, since L1 holds only 4 to 8 of them in a block
      // (blockGroups). The thresholds and their measurements: tuning.ts, docs/tuning.md.
      const stream = streams<T>(n, d);
      if (streamsStatistics(patBytes, stream)) {
        const t1 = after(q2, <usize>E << 3);
        shiftedSumsStream<T>(x, groups, E, cPat, t1, after(t1, patBytes), p1, p2, foldBlock(stream));
      } else {
        shiftedSumsGroups<T>(x, groups, E, cPat, p1, p2);
      }
      foldPattern(p1, E, d, s1);
      foldPattern(p2, E, d, s2);
      r0 = groups * (E / d);
    }
  }
  shiftedSumsRows<T>(x, r0, n, d, c, s1, s2);
}

/**
 * Rows whose mean is the first shift: |mean − c| is then about std/√8, so the second pass
 * (below) is needed for a column once in a million (|z| > 4.9) on typical data.
 */
export const HEAD_ROWS: i32 = 8;

/** Shifts with (mean − c)² above this multiple of var get a second pass. */
export const RESHIFT_RATIO: f64 = 3.0;

/**
 * What a + b loses to rounding (f64, exact: Knuth's TwoSum), so that a + b and it give the sum
 * to twice the precision.
 */
// @ts-ignore: decorator
@inline export function sumError(a: f64, b: f64, sum: f64): f64 {
  const back = sum - a;
  return (a - (sum - back)) + (b - back);
}

/** sumError for two f64 lanes at once. */
// @ts-ignore: decorator
@inline function sumErrorTwo(a: v128, b: v128, sum: v128): v128 {
  const back = f64x2.sub(sum, a);
  return f64x2.add(f64x2.sub(a, f64x2.sub(sum, back)), f64x2.sub(b, back));
}

/**
 * mean[j] and variance[j] (f64, biased) of the columns of x: `rows` (n, d), S = 1, or
 * channels of (n, d, S) (see planeShiftedSums); n·S ≥ 1 values per column. The mean is shift + a
 * small offset; for f64 data, meanLo[j] keeps what their f64 sum rounds away, so that
 * mean + meanLo is the mean to twice f64's precision (with |mean| ≫ std, the f64 mean alone
 * is off by up to half an ulp of the mean, a large error in x − mean; f32 data need only
 * mean, whose f64 is twice theirs). Each export passes `rows` as a constant, so its module
 * keeps only one of the two paths.
 * c: d values of T (the shift, left as the mean rounded to T); scratch as for shiftedSums.
 */
// @ts-ignore: decorator
@inline export function columnMeanVar<T>(
  x: usize, n: i32, d: i32, S: i32, rows: bool, mean: usize, variance: usize, meanLo: usize, c: usize, scratch: usize,
): void {
  // Initial shift: the mean of the first values of each column, themselves shifted by the first.
  if (rows) {
    // In T: any value near the mean will do.
    const head = min(n, HEAD_ROWS);
    const rowBytes = <usize>d * sizeof<T>();
    const invHead = <T>(1.0 / <f64>head);
    let j = 0;
    if (ASC_FEATURE_SIMD) {
      const h = v128.splat<T>(invHead);
      for (; j + lanes<T>() <= d; j += lanes<T>()) {
        const first = at<T>(x, j);
        const x0 = v128.load(first);
        let sum = v128.splat<T>(<T>0);
        for (let r = 1, p = first + rowBytes; r < head; r++, p += rowBytes) sum = v128.add<T>(sum, v128.sub<T>(v128.load(p), x0));
        v128.store(at<T>(c, j), v128.add<T>(x0, v128.mul<T>(sum, h)));
      }
    }
    for (; j < d; j++) {
      const first = at<T>(x, j);
      const x0 = load<T>(first);
      let sum: T = 0;
      for (let r = 1, p = first + rowBytes; r < head; r++, p += rowBytes) sum += load<T>(p) - x0;
      store<T>(at<T>(c, j), x0 + sum * invHead);
    }
  } else {
    const head = min(S, ROW_BLOCK);
    for (let j = 0; j < d; j++) {
      const run = at<T>(x, j * S);
      const first = <f64>load<T>(run);
      let sum = 0.0;
      for (let s = 0; s < head; s++) sum += <f64>load<T>(at<T>(run, s)) - first;
      store<T>(at<T>(c, j), <T>(first + sum / <f64>head));
    }
  }
  const count = <f64>n * <f64>S;
  const invCount = 1.0 / count;
  for (let pass = 0; pass < 2; pass++) {
    if (rows) shiftedSums<T>(x, n, d, c, mean, variance, scratch);
    else planeShiftedSums<T>(x, n, d, S, c, mean, variance);
    let reshift = false;
    // Sums that overflowed (or NaN in the input) leave v at Infinity or NaN: not below Infinity.
    let notFinite = false;
    let j = 0;
    if (ASC_FEATURE_SIMD) {
      const ic = f64x2.splat(invCount);
      const ratio = f64x2.splat(RESHIFT_RATIO);
      const zero = f64x2.splat(0.0);
      let far = zero;
      const inf = f64x2.splat(Infinity);
      let finite = f64x2.lt(zero, inf);
      for (; j + 2 <= d; j += 2) {
        const m = f64x2.mul(v128.load(at<f64>(mean, j)), ic);
        const m2 = f64x2.mul(m, m);
        const v = f64x2.max(f64x2.sub(f64x2.mul(v128.load(at<f64>(variance, j)), ic), m2), zero);
        const shift = loadTwo<T>(at<T>(c, j));
        const mu = f64x2.add(shift, m);
        v128.store(at<f64>(mean, j), mu);
        if (sizeof<T>() == 8) v128.store(at<f64>(meanLo, j), sumErrorTwo(shift, m, mu));
        v128.store(at<f64>(variance, j), v);
        far = v128.or(far, f64x2.gt(m2, f64x2.mul(ratio, v)));
        finite = v128.and(finite, f64x2.lt(v, inf));
        storeTwo<T>(at<T>(c, j), mu);
      }
      reshift = v128.any_true(far);
      notFinite = !i64x2.all_true(finite);
    }
    for (; j < d; j++) {
      const m = load<f64>(at<f64>(mean, j)) * invCount;
      const v = max(load<f64>(at<f64>(variance, j)) * invCount - m * m, 0.0);
      const shift = <f64>load<T>(at<T>(c, j));
      const mu = shift + m;
      store<f64>(at<f64>(mean, j), mu);
      if (sizeof<T>() == 8) store<f64>(at<f64>(meanLo, j), sumError(shift, m, mu));
      store<f64>(at<f64>(variance, j), v);
      if (m * m > RESHIFT_RATIO * v) reshift = true;
      if (!(v < Infinity)) notFinite = true;
      store<T>(at<T>(c, j), <T>mu);
    }
    if (notFinite) exactWhereNotFinite<T>(x, n, d, S, mean, variance, meanLo, c);
    if (!reshift) break;
  }
}

/**
 * Columns whose statistics came out Infinity or NaN: the block sums of squares in T overflow
 * once values lie more than about 1e18 (f32) from the shift. Such columns, rare, are summed
 * again in f64, two passes (x = value r·S + s of column j: row-major data is S = 1); a NaN or
 * Infinity in the input stays NaN there.
 */
function exactWhereNotFinite<T>(x: usize, n: i32, d: i32, S: i32, mean: usize, variance: usize, meanLo: usize, c: usize): void {
  const count = <f64>n * <f64>S;
  const step = <usize>d * <usize>S * sizeof<T>();
  const runBytes = <usize>S * sizeof<T>();
  for (let j = 0; j < d; j++) {
    if (load<f64>(at<f64>(variance, j)) < Infinity) continue;
    const first = x + <usize>j * runBytes;
    let sum = 0.0;
    for (let i = 0, p = first; i < n; i++, p += step) {
      for (let q = p, end = p + runBytes; q < end; q += sizeof<T>()) sum += <f64>load<T>(q);
    }
    const mu = sum / count;
    let s1 = 0.0, s2 = 0.0;
    for (let i = 0, p = first; i < n; i++, p += step) {
      for (let q = p, end = p + runBytes; q < end; q += sizeof<T>()) {
        const v = <f64>load<T>(q) - mu;
        s1 += v;
        s2 += v * v;
      }
    }
    const m = s1 / count;
    store<f64>(at<f64>(mean, j), mu + m);
    if (sizeof<T>() == 8) store<f64>(at<f64>(meanLo, j), sumError(mu, m, mu + m));
    store<f64>(at<f64>(variance, j), max(s2 / count - m * m, 0.0));
    store<T>(at<T>(c, j), <T>(mu + m));
  }
}

// Channels-first data (N, C, S): channel c of item i is the contiguous run of S values at
// base + ((i·C + c)·S)·sizeof<T>() (S = H·W for NCHW images, L for (N, C, L)). Per-channel
// sums reduce contiguous runs, so these loops need no patterns or transposes.

/**
 * s1[c] = Σ (x − k[c]), s2[c] = Σ (x − k[c])² over every run of channel c (f64). Runs are
 * visited in memory order (item by item), so the pass streams through x.
 */
export function planeShiftedSums<T>(x: usize, n: i32, d: i32, S: i32, k: usize, s1: usize, s2: usize): void {
  const L = lanes<T>();
  const runBytes = <usize>S * sizeof<T>();
  memory.fill(s1, 0, <usize>d << 3);
  memory.fill(s2, 0, <usize>d << 3);
  let p = x;
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < d; ch++) {
      const kc = load<T>(at<T>(k, ch));
      const end = p + runBytes;
      let sum1 = 0.0;
      let sum2 = 0.0;
      if (ASC_FEATURE_SIMD) {
        // Blocks of ROW_BLOCK steps of four vectors summed in T; each block's four partial
        // sums added together in T, then into f64 lanes, reduced once per run.
        const zero = v128.splat<T>(<T>0);
        const kv = v128.splat<T>(kc);
        let f1 = f64x2.splat(0);
        let f2 = f64x2.splat(0);
        while (p + 64 <= end) {
          let a0 = zero, a1 = zero, a2 = zero, a3 = zero;
          let b0 = zero, b1 = zero, b2 = zero, b3 = zero;
          for (let step = 0; step < ROW_BLOCK && p + 64 <= end; step++, p += 64) {
            const v0 = v128.sub<T>(v128.load(p), kv);
            const v1 = v128.sub<T>(v128.load(p, 16), kv);
            const v2 = v128.sub<T>(v128.load(p, 32), kv);
            const v3 = v128.sub<T>(v128.load(p, 48), kv);
            a0 = v128.add<T>(a0, v0);
            a1 = v128.add<T>(a1, v1);
            a2 = v128.add<T>(a2, v2);
            a3 = v128.add<T>(a3, v3);
            b0 = v128.add<T>(b0, v128.mul<T>(v0, v0));
            b1 = v128.add<T>(b1, v128.mul<T>(v1, v1));
            b2 = v128.add<T>(b2, v128.mul<T>(v2, v2));
            b3 = v128.add<T>(b3, v128.mul<T>(v3, v3));
          }
          f1 = addLanesToF64x2<T>(f1, v128.add<T>(v128.add<T>(a0, a1), v128.add<T>(a2, a3)));
          f2 = addLanesToF64x2<T>(f2, v128.add<T>(v128.add<T>(b0, b1), v128.add<T>(b2, b3)));
        }
        sum1 += f64x2.extract_lane(f1, 0) + f64x2.extract_lane(f1, 1);
        sum2 += f64x2.extract_lane(f2, 0) + f64x2.extract_lane(f2, 1);
      }
      // The rest of the run (and all of it in the scalar build), ROW_BLOCK values at a time.
      while (p < end) {
        let a: T = 0;
        let b: T = 0;
        for (let step = 0; step < ROW_BLOCK * L && p < end; step++, p += sizeof<T>()) {
          const v: T = load<T>(p) - kc;
          a += v;
          b += v * v;
        }
        sum1 += <f64>a;
        sum2 += <f64>b;
      }
      store<f64>(at<f64>(s1, ch), load<f64>(at<f64>(s1, ch)) + sum1);
      store<f64>(at<f64>(s2, ch), load<f64>(at<f64>(s2, ch)) + sum2);
    }
  }
}
