// Forward pass: batch statistics, running-statistics update, and the per-column affine map
// out = (x − center) · scale + bias that both train and test mode reduce to. Each mode is
// a few kernels (moments, constants, normalize), so that each module stays small.
import { lanes, at, groupLength, patternOf, loadTwo, storeTwo, roundTo, madd } from "./columns";
import { STRIP_GROUPS, streams, stripsOf, quartersOf } from "./tuning";
import { MAP_ARRAYS, after, columnArray } from "./work";
import { columnMeanVar } from "./statistics";
import { Plain, Relu, activated, activatedOne, isRelu, reluMap } from "./activation";

/**
 * (x − c)·s + b from xc = x − c (exact near the mean), fused in the relaxed build; with relu
 * max(0, ·) of the unfused value, the sign the backward's mask recomputes (activation.ts).
 */
// @ts-ignore: decorator
@inline function affineOf<T>(xc: v128, s: v128, b: v128, relu: bool): v128 {
  return relu ? activated<T>(v128.add<T>(v128.mul<T>(xc, s), b), true) : madd<T>(xc, s, b);
}

/**
 * Strips of `strip` narrow groups from group g on (see NARROW_GROUP_BYTES), two vectors wide
 * (groupLength makes a group's count even) with their constants in registers, two groups per
 * step (`strip` is even); returns the first group left. Inlined with a constant strip (see
 * backwardApplyStrips in backward.ts).
 */
// @ts-ignore: decorator
@inline function affineStrips<T>(x: usize, g: i32, groups: i32, E: i32, cPat: usize, sPat: usize, bPat: usize, out: usize, strip: i32, relu: bool): i32 {
  const P = E / lanes<T>();
  const groupBytes = <usize>E * sizeof<T>();
  for (; g + strip <= groups; g += strip) {
    const base = <usize>g * groupBytes;
    for (let k = 0; k < P; k += 2) {
      const off = <usize>k << 4;
      const c0 = v128.load(cPat + off), s0 = v128.load(sPat + off), b0 = v128.load(bPat + off);
      const c1 = v128.load(cPat + off, 16), s1 = v128.load(sPat + off, 16), b1 = v128.load(bPat + off, 16);
      let px = x + base + off, po = out + base + off;
      for (let r = 0; r < strip; r += 2, px += 2 * groupBytes, po += 2 * groupBytes) {
        v128.store(po, affineOf<T>(v128.sub<T>(v128.load(px), c0), s0, b0, relu));
        v128.store(po, affineOf<T>(v128.sub<T>(v128.load(px, 16), c1), s1, b1, relu), 16);
        v128.store(po + groupBytes, affineOf<T>(v128.sub<T>(v128.load(px + groupBytes), c0), s0, b0, relu));
        v128.store(po + groupBytes, affineOf<T>(v128.sub<T>(v128.load(px + groupBytes, 16), c1), s1, b1, relu), 16);
      }
    }
  }
  return g;
}

/**
 * Groups g.. four at a time, a quarter of the rest apart, one load of the constants for four, as
 * in backwardApplyQuarters; returns the first of the one to three groups left. Two vectors per
 * step (a group's count is even): half the address arithmetic per vector. Written out four
 * times, as in backwardApplyQuarters. Measurements: docs/tuning.md (WIDE_GROUP_BYTES).
 */
function affineQuarters<T, A>(x: usize, g: i32, groups: i32, groupBytes: usize, cPat: usize, sPat: usize, bPat: usize, out: usize): i32 {
  const relu = isRelu<A>();
  const quads = (groups - g) >> 2;
  const stride = <usize>quads * groupBytes;
  for (let base = <usize>g * groupBytes, end = <usize>(g + quads) * groupBytes; base < end; base += groupBytes) {
    for (let off: usize = 0; off < groupBytes; off += 32) {
      const c0 = v128.load(cPat + off), s0 = v128.load(sPat + off), b0 = v128.load(bPat + off);
      const c1 = v128.load(cPat + off, 16), s1 = v128.load(sPat + off, 16), b1 = v128.load(bPat + off, 16);
      let p = base + off;
      v128.store(out + p, affineOf<T>(v128.sub<T>(v128.load(x + p), c0), s0, b0, relu));
      v128.store(out + p, affineOf<T>(v128.sub<T>(v128.load(x + p, 16), c1), s1, b1, relu), 16);
      p += stride;
      v128.store(out + p, affineOf<T>(v128.sub<T>(v128.load(x + p), c0), s0, b0, relu));
      v128.store(out + p, affineOf<T>(v128.sub<T>(v128.load(x + p, 16), c1), s1, b1, relu), 16);
      p += stride;
      v128.store(out + p, affineOf<T>(v128.sub<T>(v128.load(x + p), c0), s0, b0, relu));
      v128.store(out + p, affineOf<T>(v128.sub<T>(v128.load(x + p, 16), c1), s1, b1, relu), 16);
      p += stride;
      v128.store(out + p, affineOf<T>(v128.sub<T>(v128.load(x + p), c0), s0, b0, relu));
      v128.store(out + p, affineOf<T>(v128.sub<T>(v128.load(x + p, 16), c1), s1, b1, relu), 16);
    }
  }
  return g + 4 * quads;
}

/**
 * SIMD over groups of E values. Narrow groups in strips; other groups four per load of the
 * constants, a quarter of the rest apart; streaming groups whose constants stay in L1, one
 * after another, so that the reads and writes stream through memory in order (interleaved
 * rows cut the bandwidth, see docs/tuning.md), two vectors per step (groupLength makes their
 * count even: half the address arithmetic). `rowsPerGroup` = E / d.
 */
function affineGroups<T, A>(x: usize, groups: i32, E: i32, cPat: usize, sPat: usize, bPat: usize, out: usize, stream: bool, rowsPerGroup: i32): void {
  const relu = isRelu<A>();
  const groupBytes = <usize>E * sizeof<T>();
  let g = 0;
  if (stripsOf(groupBytes, stream)) {
    // Groups of several rows in strips of twice the height; each height inlined as a constant.
    g = rowsPerGroup > 1
      ? affineStrips<T>(x, g, groups, E, cPat, sPat, bPat, out, 2 * STRIP_GROUPS, relu)
      : affineStrips<T>(x, g, groups, E, cPat, sPat, bPat, out, STRIP_GROUPS, relu);
  }
  if (quartersOf(groupBytes, stream)) g = affineQuarters<T, A>(x, g, groups, groupBytes, cPat, sPat, bPat, out);
  for (; g < groups; g++) {
    const base = <usize>g * groupBytes;
    for (let off: usize = 0; off < groupBytes; off += 32) {
      const p = base + off;
      const v = v128.sub<T>(v128.load(x + p), v128.load(cPat + off));
      v128.store(out + p, affineOf<T>(v, v128.load(sPat + off), v128.load(bPat + off), relu));
      const w = v128.sub<T>(v128.load(x + p, 16), v128.load(cPat + off, 16));
      v128.store(out + p, affineOf<T>(w, v128.load(sPat + off, 16), v128.load(bPat + off, 16), relu), 16);
    }
  }
}

/**
 * out[r, j] = (x[r, j] − center[j]) · scale[j] + bias[j]; for S > 1, per channel of (n, d, S).
 * scratch: 3·groupLength<T>(d) values of T. With A = Relu, max(0, out).
 */
export function affineColumns<T, A>(
  x: usize, n: i32, d: i32, S: i32, center: usize, scale: usize, bias: usize, out: usize, scratch: usize,
): void {
  const relu = isRelu<A>();
  if (S > 1) {
    planeAffine<T, A>(x, n, d, S, center, scale, bias, out);
    return;
  }
  let r0 = 0;
  if (ASC_FEATURE_SIMD) {
    const E = groupLength<T>(d);
    const groups = <i32>((<i64>n * d) / E);
    if (groups > 0) {
      const patBytes = <usize>E * sizeof<T>();
      const cPat = patternOf<T>(center, d, E, scratch);
      const sPat = patternOf<T>(scale, d, E, after(scratch, patBytes));
      const bPat = patternOf<T>(bias, d, E, after(scratch, 2 * patBytes));
      affineGroups<T, A>(x, groups, E, cPat, sPat, bPat, out, streams<T>(n, d), E / d);
      r0 = groups * (E / d);
    }
  }
  const rowBytes = <usize>d * sizeof<T>();
  for (let r = r0; r < n; r++) {
    const xr = x + <usize>r * rowBytes;
    const or = out + <usize>r * rowBytes;
    for (let j = 0; j < d; j++) {
      const v: T = load<T>(at<T>(xr, j)) - load<T>(at<T>(center, j));
      store<T>(at<T>(or, j), activatedOne<T>(v * load<T>(at<T>(scale, j)) + load<T>(at<T>(bias, j)), relu));
    }
  }
}

/**
 * The per-column affine map of a forward, kept at the start of the work area (columnArray)
 * between the kernels that compute it (trainConstants, testConstants) and the one that applies
 * it (normalize): center, scale and bias. After it, trainMoments leaves the f64 mean and
 * variance for trainConstants.
 */
const CENTER = 0, SCALE = 1, BIAS = 2;

/**
 * inv[j] = 1 / sqrt(v[j] + eps) in f64, for v of T. Square root and division are the slow
 * part of the per-column work. With `estimate` (results that will be rounded to f32), four
 * columns at a time take an f32 estimate (error ≤ 2e-7) and one Newton step in f64 (error
 * ~3e-14, far below f32 rounding); otherwise, and from the first column outside f32's
 * comfortable range on, f64 throughout.
 */
function inverseSqrt<T>(v: usize, d: i32, eps: f64, inv: usize, estimate: bool): void {
  let j = 0;
  if (ASC_FEATURE_SIMD) {
    const e = f64x2.splat(eps);
    const one = f64x2.splat(1.0);
    if (estimate) {
      const low = f64x2.splat(1e-30);
      const high = f64x2.splat(1e30);
      const oneF32 = f32x4.splat(1.0);
      const threeHalves = f64x2.splat(1.5);
      const half = f64x2.splat(0.5);
      for (; j + 4 <= d; j += 4) {
        const a0 = f64x2.add(loadTwo<T>(at<T>(v, j)), e);
        const a1 = f64x2.add(loadTwo<T>(at<T>(v, j + 2)), e);
        // The rest in f64 from the first column out of range (NaN included).
        if (!i64x2.all_true(v128.and(v128.and(f64x2.ge(a0, low), f64x2.le(a0, high)), v128.and(f64x2.ge(a1, low), f64x2.le(a1, high))))) break;
        const a = v128.shuffle<i64>(f32x4.demote_f64x2_zero(a0), f32x4.demote_f64x2_zero(a1), 0, 2);
        const y = f32x4.div(oneF32, f32x4.sqrt(a));
        const y0 = f64x2.promote_low_f32x4(y);
        const y1 = f64x2.promote_low_f32x4(v128.shuffle<i64>(y, y, 1, 0));
        // y·(3/2 − a·y²/2)
        v128.store(at<f64>(inv, j), f64x2.mul(y0, f64x2.sub(threeHalves, f64x2.mul(f64x2.mul(half, a0), f64x2.mul(y0, y0)))));
        v128.store(at<f64>(inv, j + 2), f64x2.mul(y1, f64x2.sub(threeHalves, f64x2.mul(f64x2.mul(half, a1), f64x2.mul(y1, y1)))));
      }
    }
    for (; j + 2 <= d; j += 2) {
      v128.store(at<f64>(inv, j), f64x2.div(one, f64x2.sqrt(f64x2.add(loadTwo<T>(at<T>(v, j)), e))));
    }
  }
  for (; j < d; j++) store<f64>(at<f64>(inv, j), 1.0 / Math.sqrt(<f64>load<T>(at<T>(v, j)) + eps));
}

/**
 * Train mode, step 1: the batch mean (f64, and what its rounding lost) and biased variance
 * (f64) of x, `rows` (n, d) with S = 1 or channels of (n, d, S), kept in the work area for
 * trainConstants.
 * work: workBytes<T>(d), 16-byte aligned.
 */
// @ts-ignore: decorator
@inline export function trainMoments<T>(x: usize, n: i32, d: i32, S: i32, rows: bool, work: usize): void {
  const mean64 = columnArray<T>(work, d, MAP_ARRAYS);
  const var64 = after(mean64, <usize>d << 3);
  const lo64 = after(var64, <usize>d << 3);
  columnMeanVar<T>(x, n, d, S, rows, mean64, var64, lo64, work, after(lo64, <usize>d << 3));
}

/**
 * Train mode, step 2, from the moments of step 1: mean, meanLo, variance, invStd (all T);
 * the running statistics updated in place, running = momentum·running + (1 − momentum)·batch,
 * with the batch variance multiplied by runVarScale (1, or n/(n − 1) for the unbiased
 * estimate PyTorch keeps); and the affine map for normalize() at the start of work.
 *
 * The mean is returned as two T values, mean + meanLo, because in f32 a mean of 1e4 rounds
 * by up to 5e-4, which would be a 5e-4 error in x̂ for unit-spread data (in f64, a mean of
 * 1e10 by up to 1e-6). Kernels subtract the exactly representable `mean` from x (exact for x
 * near the mean) and fold meanLo into the per-column constants, computed in f64.
 *
 * gamma = 0 means gamma = 1, beta = 0 means beta = 0, runMean/runVar = 0: not updated.
 */
export function trainConstants<T>(
  d: i32, gamma: usize, beta: usize, eps: f64, momentum: f64, runVarScale: f64,
  runMean: usize, runVar: usize, mean: usize, meanLo: usize, variance: usize, invStd: usize, work: usize,
): void {
  const center = columnArray<T>(work, d, CENTER);
  const scale = columnArray<T>(work, d, SCALE);
  const bias = columnArray<T>(work, d, BIAS);
  const mean64 = columnArray<T>(work, d, MAP_ARRAYS);
  const var64 = after(mean64, <usize>d << 3);
  const lo64 = after(var64, <usize>d << 3);
  const inv64 = after(lo64, <usize>d << 3);
  inverseSqrt<f64>(var64, d, eps, inv64, sizeof<T>() == 4);
  let j = 0;
  if (ASC_FEATURE_SIMD) {
    // The loop below two columns at a time: it is bound by conversions between f64 and T.
    const keep = f64x2.splat(momentum);
    const take = f64x2.splat(1.0 - momentum);
    const unbias = f64x2.splat(runVarScale);
    const one = f64x2.splat(1.0);
    const zero = f64x2.splat(0.0);
    for (; j + 2 <= d; j += 2) {
      const mu = v128.load(at<f64>(mean64, j));
      const v = v128.load(at<f64>(var64, j));
      const inv = v128.load(at<f64>(inv64, j));
      const hi = roundTo<T>(mu);
      // In f64, hi is mu itself and the low part is what the moments' sum rounded away.
      const lo = sizeof<T>() == 8 ? v128.load(at<f64>(lo64, j)) : roundTo<T>(f64x2.sub(mu, hi));
      const g = gamma ? loadTwo<T>(at<T>(gamma, j)) : one;
      const b = beta ? loadTwo<T>(at<T>(beta, j)) : zero;
      const s = roundTo<T>(f64x2.mul(g, inv));
      storeTwo<T>(at<T>(mean, j), hi);
      storeTwo<T>(at<T>(meanLo, j), lo);
      storeTwo<T>(at<T>(variance, j), v);
      storeTwo<T>(at<T>(invStd, j), inv);
      storeTwo<T>(at<T>(center, j), hi);
      storeTwo<T>(at<T>(scale, j), s);
      storeTwo<T>(at<T>(bias, j), f64x2.sub(b, f64x2.mul(lo, s)));
      if (runMean) {
        const rm = loadTwo<T>(at<T>(runMean, j));
        storeTwo<T>(at<T>(runMean, j), f64x2.add(f64x2.mul(keep, rm), f64x2.mul(take, mu)));
      }
      if (runVar) {
        const rv = loadTwo<T>(at<T>(runVar, j));
        storeTwo<T>(at<T>(runVar, j), f64x2.add(f64x2.mul(keep, rv), f64x2.mul(f64x2.mul(take, v), unbias)));
      }
    }
  }
  for (; j < d; j++) {
    const mu = load<f64>(at<f64>(mean64, j));
    const v = load<f64>(at<f64>(var64, j));
    const hi = <T>mu;
    const lo = sizeof<T>() == 8 ? <T>load<f64>(at<f64>(lo64, j)) : <T>(mu - <f64>hi);
    const inv = load<f64>(at<f64>(inv64, j));
    const g: f64 = gamma ? <f64>load<T>(at<T>(gamma, j)) : 1.0;
    const b: f64 = beta ? <f64>load<T>(at<T>(beta, j)) : 0.0;
    const s = <T>(g * inv);
    store<T>(at<T>(mean, j), hi);
    store<T>(at<T>(meanLo, j), lo);
    store<T>(at<T>(variance, j), <T>v);
    store<T>(at<T>(invStd, j), <T>inv);
    store<T>(at<T>(center, j), hi);
    store<T>(at<T>(scale, j), s);
    store<T>(at<T>(bias, j), <T>(b - <f64>lo * <f64>s));
    if (runMean) {
      const rm = <f64>load<T>(at<T>(runMean, j));
      store<T>(at<T>(runMean, j), <T>(momentum * rm + (1.0 - momentum) * mu));
    }
    if (runVar) {
      const rv = <f64>load<T>(at<T>(runVar, j));
      store<T>(at<T>(runVar, j), <T>(momentum * rv + (1.0 - momentum) * v * runVarScale));
    }
  }
}

/**
 * Test mode, first half: the affine map out = (x − runMean) · gamma / sqrt(runVar + eps) + beta
 * at the start of work, and 1 / sqrt(runVar + eps) into invStd unless it is 0 (the frozen
 * statistics of an eval-mode backward).
 */
export function testConstants<T>(d: i32, gamma: usize, beta: usize, eps: f64, runMean: usize, runVar: usize, invStd: usize, work: usize): void {
  const center = columnArray<T>(work, d, CENTER);
  const scale = columnArray<T>(work, d, SCALE);
  const bias = columnArray<T>(work, d, BIAS);
  const inv64 = columnArray<T>(work, d, MAP_ARRAYS);
  const bytes = <usize>d * sizeof<T>();
  memory.copy(center, runMean, bytes);
  if (beta) memory.copy(bias, beta, bytes);
  else memory.fill(bias, 0, bytes);
  inverseSqrt<T>(runVar, d, eps, inv64, sizeof<T>() == 4);
  let j = 0;
  if (ASC_FEATURE_SIMD) {
    const one = f64x2.splat(1.0);
    for (; j + 2 <= d; j += 2) {
      const inv = v128.load(at<f64>(inv64, j));
      storeTwo<T>(at<T>(scale, j), f64x2.mul(gamma ? loadTwo<T>(at<T>(gamma, j)) : one, inv));
      if (invStd) storeTwo<T>(at<T>(invStd, j), inv);
    }
  }
  for (; j < d; j++) {
    const g: f64 = gamma ? <f64>load<T>(at<T>(gamma, j)) : 1.0;
    const inv = load<f64>(at<f64>(inv64, j));
    store<T>(at<T>(scale, j), <T>(g * inv));
    if (invStd) store<T>(at<T>(invStd, j), <T>inv);
  }
}

/** Second half of either mode: out = (x − center)·scale + bias with the map at the start of work. */
export function normalize<T>(x: usize, n: i32, d: i32, S: i32, work: usize, out: usize): void {
  affineColumns<T, Plain>(
    x, n, d, S, columnArray<T>(work, d, CENTER), columnArray<T>(work, d, SCALE), columnArray<T>(work, d, BIAS), out,
    columnArray<T>(work, d, MAP_ARRAYS),
  );
}

/**
 * The fused forward out = max(0, (x − mean)·scale + bias), with reluMap's constants from the
 * step's saved values (mean, meanLo, invStd: the batch statistics, or in test mode the
 * running mean, meanLo = 0 and the running invStd), which the backward recomputes the mask
 * from. Overwrites the map at the start of work.
 */
export function normalizeRelu<T>(
  x: usize, n: i32, d: i32, S: i32, gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, work: usize, out: usize,
): void {
  const scale = columnArray<T>(work, d, SCALE);
  const bias = columnArray<T>(work, d, BIAS);
  reluMap<T>(d, gamma, beta, meanLo, invStd, scale, bias);
  affineColumns<T, Relu>(x, n, d, S, mean, scale, bias, out, columnArray<T>(work, d, MAP_ARRAYS));
}

// Channels-first data (N, C, S): channel c of item i is the contiguous run of S values at
// base + ((i·C + c)·S)·sizeof<T>() (S = H·W for NCHW images, L for (N, C, L)). Per-channel
// sums reduce contiguous runs, so these loops need no patterns or transposes.

/** out = (x − center[c])·scale[c] + bias[c] over every run of channel c. */
export function planeAffine<T, A>(x: usize, n: i32, d: i32, S: i32, center: usize, scale: usize, bias: usize, out: usize): void {
  const relu = isRelu<A>();
  const runBytes = <usize>S * sizeof<T>();
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < d; ch++) {
      const c = load<T>(at<T>(center, ch));
      const s = load<T>(at<T>(scale, ch));
      const b = load<T>(at<T>(bias, ch));
      const offset = (<usize>i * d + ch) * runBytes;
      let p = x + offset;
      let q = out + offset;
      const end = p + runBytes;
      if (ASC_FEATURE_SIMD) {
        const cv = v128.splat<T>(c);
        const sv = v128.splat<T>(s);
        const bv = v128.splat<T>(b);
        for (; p + 32 <= end; p += 32, q += 32) {
          v128.store(q, affineOf<T>(v128.sub<T>(v128.load(p), cv), sv, bv, relu));
          v128.store(q, affineOf<T>(v128.sub<T>(v128.load(p, 16), cv), sv, bv, relu), 16);
        }
      }
      for (; p < end; p += sizeof<T>(), q += sizeof<T>()) store<T>(q, activatedOne<T>((load<T>(p) - c) * s + b, relu));
    }
  }
}
