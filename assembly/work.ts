// The work area every kernel receives: its layout, in one place. The caller (src/block.ts)
// reserves workBytes(n, d, S, step) bytes, 16-byte aligned, for the kernels of one step.
//
// From the start: per-column arrays of T (d values each, 16-byte aligned, see columnArray),
// the map one kernel leaves for the next:
//   forward:  center, scale, bias (normalize.ts);   backward: a, m, b (backward.ts).
// After those MAP_ARRAYS arrays, each kernel's own scratch:
//   trainMoments:      mean, variance, meanLo (f64, d each), then the statistics' sums:
//                      a pattern of T, two of f64, two of T (SIMD rows only).
//   trainConstants:    mean, variance, meanLo, invStd (f64, d each).
//   testConstants:     invStd (f64, d).
//   normalize:         three patterns of T (SIMD rows only).
//   backwardConstants: Σdout, Σdout·(x − mean) (f64, d each), then a pattern of T, two of
//                      f64, two of T (SIMD rows only).
//   backwardApply:     four patterns of T (SIMD rows only).
//   With the fused ReLU (BACKWARD_RELU_STEP), both backward kernels first keep the mask's
//   scale and bias (T, d each), and after their own patterns two more (activation.ts).
//   Channels-last GroupNorm (groupnorm.ts, GROUP_LAST_STEP): see each kernel.
// A pattern is groupLength<T>(d) values (columns.ts); only a batch of at least one group
// (n·d ≥ E, rows, SIMD build) uses patterns.
import { groupLength } from "./columns";

/** The per-column arrays at the start of the work area (the map between two kernels). */
export const MAP_ARRAYS: i32 = 3;

/** The steps a work area is sized for (see workBytes); the same numbers in src/kernels.ts. */
export const TEST_STEP: i32 = 0;
export const TRAIN_STEP: i32 = 1;
export const BACKWARD_STEP: i32 = 2;
/** A backward through the fused ReLU: BACKWARD_STEP's and the mask's map and patterns. */
export const BACKWARD_RELU_STEP: i32 = 3;
/**
 * The channels-last GroupNorm kernels' scratch (groupnorm.ts), for (n, d, S) = (positions,
 * channels, 1) of one item; the moments' scratch comes after TRAIN_STEP's arrays of n·G columns.
 */
export const GROUP_LAST_STEP: i32 = 4;

/** Array k of the per-column arrays of T at the start of a work area. */
// @ts-ignore: decorator
@inline export function columnArray<T>(work: usize, d: i32, k: i32): usize {
  return work + <usize>k * ((<usize>d * sizeof<T>() + 15) & ~(<usize>15));
}

/** The address `bytes` (rounded up to 16) past p: carves a work area into pieces. */
// @ts-ignore: decorator
@inline export function after(p: usize, bytes: usize): usize {
  return p + ((bytes + 15) & ~(<usize>15));
}

/** bytes rounded up to 16, in f64: sizes are computed in f64 so that none wraps past 2³². */
function padded(bytes: f64): f64 {
  return Math.ceil(bytes / 16) * 16;
}

/**
 * Bytes of work area the kernels of `step` take for (n, d, S) data of T: exactly what they
 * carve, in f64 (a caller refuses what does not fit in memory).
 */
export function workBytes<T>(n: i32, d: i32, S: i32, step: i32): f64 {
  const t = padded(<f64>d * <f64>sizeof<T>());
  const f = padded(<f64>d * 8);
  const E = <f64>groupLength<T>(d);
  const patterns = ASC_FEATURE_SIMD && S == 1 && <f64>n * <f64>d >= E;
  const pattern = patterns ? padded(E * <f64>sizeof<T>()) : 0;
  const sums = patterns ? pattern + 2 * padded(E * 8) + 2 * pattern : 0;
  if (step == GROUP_LAST_STEP) {
    const pat = padded(E * <f64>sizeof<T>());
    return max(t + 2 * f + sums, max(5 * pat, 5 * f + 7 * pat + 2 * padded(E * 8)));
  }
  let rest: f64;
  if (step == TEST_STEP) rest = max(f, 3 * pattern);
  else if (step == TRAIN_STEP) rest = max(3 * f + sums, max(4 * f, 3 * pattern));
  else rest = max(2 * f + sums, 4 * pattern);
  // The mask's scale and bias and their patterns (backward.ts), first in each kernel's scratch.
  if (step == BACKWARD_RELU_STEP) rest += 2 * t + 2 * pattern;
  return <f64>MAP_ARRAYS * t + rest;
}
