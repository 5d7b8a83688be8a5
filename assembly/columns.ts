// Shared building blocks for kernels over row-major (n, d) arrays of T = f32 | f64.
//
// Two ways through the data:
// - Row by row (the scalar build, and the last rows in the SIMD build): column j of row r is
//   at base + (r·d + j)·sizeof<T>().
// - As a flat array of "groups" (SIMD build): a group is E = P·lanes consecutive values, with
//   E a multiple of d, so value e of every group belongs to column e % d. Per-column
//   constants are repeated into E-long patterns and per-column sums kept as E partial sums.
//   This vectorizes any d, including d = 1 or 3 (e.g. d = 3, f32: E = 48, sixteen rows per
//   group), and for d a multiple of 16 a group is simply one row.

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

function gcd(a: i32, b: i32): i32 {
  while (b) {
    const t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/**
 * Values per group for d columns: the smallest multiple of both d and lanes, widened to at
 * least 4 vectors so that the inner loops always have 4 independent accumulators, and to an
 * even number of vectors, which the column sums take two at a time.
 */
export function groupLength<T>(d: i32): i32 {
  const L = lanes<T>();
  const p = d / gcd(d, L); // vectors in lcm(d, L)
  const vectors = p < 4 ? (p == 3 ? 12 : 4) : p & 1 ? 2 * p : p; // lcm(p, 4) for p = 1, 2, 3
  return vectors * L;
}

/**
 * The E-long pattern of a column array (pattern[e] = column[e % d]): the array itself when
 * E = d (any wide d that is a multiple of the lanes), else repeated into `into`.
 */
export function patternOf<T>(column: usize, d: i32, E: i32, into: usize): usize {
  if (E == d) return column;
  for (let e = 0, j = 0; e < E; e++) {
    store<T>(at<T>(into, e), load<T>(at<T>(column, j)));
    if (++j == d) j = 0;
  }
  return into;
}

/**
 * Where E partial sums (f64) of d columns go, starting at zero: the column sums themselves when
 * E = d (the caller has zeroed them), else scratch, zeroed here.
 */
export function partialsOf(column: usize, d: i32, E: i32, scratch: usize): usize {
  if (E == d) return column;
  zeroF64(scratch, E);
  return scratch;
}

/** column[e % d] += partial[e] for e < length (f64); nothing to do when partial is column. */
export function foldPattern(partial: usize, length: i32, d: i32, column: usize): void {
  if (partial == column) return;
  for (let e = 0, j = 0; e < length; e++) {
    store<f64>(at<f64>(column, j), load<f64>(at<f64>(column, j)) + load<f64>(at<f64>(partial, e)));
    if (++j == d) j = 0;
  }
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

/** Adds the partial sums in T t0, t1 (`bytes` each) into the f64 accumulators p0, p1. */
export function foldPartials<T>(t0: usize, t1: usize, bytes: usize, p0: usize, p1: usize): void {
  const accBytes = <usize>lanes<T>() << 3;
  for (let off: usize = 0, acc: usize = 0; off < bytes; off += 16, acc += accBytes) {
    addToF64<T>(p0 + acc, v128.load(t0 + off));
    addToF64<T>(p1 + acc, v128.load(t1 + off));
  }
}

// Two values of T as f64x2, and back (SIMD build only).
// @ts-ignore: decorator
@inline export function loadTwo<T>(p: usize): v128 {
  return sizeof<T>() == 4 ? f64x2.promote_low_f32x4(v128.load64_zero(p)) : v128.load(p);
}
// @ts-ignore: decorator
@inline export function storeTwo<T>(p: usize, v: v128): void {
  if (sizeof<T>() == 4) v128.store64_lane(p, f32x4.demote_f64x2_zero(v), 0);
  else v128.store(p, v);
}
/** Each lane rounded to T (and widened back). */
// @ts-ignore: decorator
@inline export function roundTo<T>(v: v128): v128 {
  return sizeof<T>() == 4 ? f64x2.promote_low_f32x4(f32x4.demote_f64x2_zero(v)) : v;
}

/** Sets count f64 values at p to zero. */
export function zeroF64(p: usize, count: i32): void {
  memory.fill(p, 0, <usize>count << 3);
}

/** acc + the lanes of v (a vector of T), as two f64 lanes. */
// @ts-ignore: decorator
@inline export function addLanesToF64x2<T>(acc: v128, v: v128): v128 {
  if (sizeof<T>() == 4) {
    const low = f64x2.promote_low_f32x4(v);
    const high = f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1));
    return f64x2.add(acc, f64x2.add(low, high));
  }
  return f64x2.add(acc, v);
}

// Fused multiply-add where it is numerically acceptable (the relaxed build, asconfig.json):
// relaxed_madd is a·b + c rounded once where the hardware has FMA, twice elsewhere, so a
// kernel that uses it is accurate to within its tolerances but not bit-reproducible across
// machines. Never for x − mean, the statistics' sums or the fused ReLU's forward, whose
// backward recomputes the mask with an unfused product (activation.ts).

/** a·b + c: relaxed_madd in the relaxed build, a product and a sum otherwise. */
// @ts-ignore: decorator
@inline export function madd<T>(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return v128.relaxed_madd<T>(a, b, c);
  return v128.add<T>(v128.mul<T>(a, b), c);
}

/** c − a·b: relaxed_nmadd in the relaxed build, a product and a difference otherwise. */
// @ts-ignore: decorator
@inline export function nmadd<T>(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return v128.relaxed_nmadd<T>(a, b, c);
  return v128.sub<T>(c, v128.mul<T>(a, b));
}
