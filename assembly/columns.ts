// Shared building blocks for kernels over row-major (n, d) arrays of T = f32 | f64.
//
// Every kernel walks the rows in order (no transpose) and keeps one value, or one SIMD
// vector of 16 / sizeof<T>() values, per column. Column j of row r is at
// base + (r * d + j) * sizeof<T>(). SIMD loops cover whole vectors; a scalar loop does
// the same arithmetic on the remaining d % lanes columns, so the SIMD and the scalar build
// give bit-identical results.

/** Rows summed in T before the partial sums are added into f64 accumulators. */
export const ROW_BLOCK: i32 = 16;

/** Number of T values in one v128. */
// @ts-ignore: decorator
@inline export function lanes<T>(): i32 {
  return 16 / <i32>sizeof<T>();
}

/** Address of element i of an array of T starting at base. */
// @ts-ignore: decorator
@inline export function at<T>(base: usize, i: i32): usize {
  return base + (<usize>i << alignof<T>());
}

/** Adds the lanes of v (a vector of T) into the f64 accumulators acc[0 .. lanes). */
// @ts-ignore: decorator
@inline export function addToF64<T>(acc: usize, v: v128): void {
  if (sizeof<T>() == 4) {
    v128.store(acc, f64x2.add(v128.load(acc), f64x2.promote_low_f32x4(v)));
    const high = v128.shuffle<f32>(v, v, 2, 3, 0, 1);
    v128.store(acc, f64x2.add(v128.load(acc, 16), f64x2.promote_low_f32x4(high)), 16);
  } else {
    v128.store(acc, f64x2.add(v128.load(acc), v));
  }
}

/** Sets d f64 values at p to zero. */
export function zeroF64(p: usize, d: i32): void {
  memory.fill(p, 0, <usize>d << 3);
}
