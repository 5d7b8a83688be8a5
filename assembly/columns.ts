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

/** Groups (or rows) summed in T before their partial sums are added into f64 accumulators. */
export const ROW_BLOCK: i32 = 16;
/**
 * The same for the streaming sum loops beyond the caches (inputs of STREAM_BYTES and more),
 * whose partial sums in T live in memory: there the fold into f64 and the zeroing after it
 * took about a fifth of the loop at 16 groups, and 32 made statistics 15–22% and gradient sums
 * 10–11% faster at (8192, 1024). Longer blocks add larger partial sums in T, so the sums'
 * error grows; with the many blocks of a large input it averages out (variance of
 * (8192, 1024): worst 1.25 ulp either way), while in cache, at (256, 1024), the worst variance
 * went from 1.03 to 1.44 ulp, so in cache the blocks stay at ROW_BLOCK (see foldBlock).
 */
export const STREAM_BLOCK: i32 = 32;

/** Groups per fold into f64 in the column sums' streaming loops: STREAM_BLOCK when `stream`. */
// @ts-ignore: decorator
@inline export function foldBlock(stream: bool): i32 {
  return stream ? STREAM_BLOCK : ROW_BLOCK;
}

/**
 * Groups per block in the blocked loops: ROW_BLOCK; twice that for narrow groups (up to 256
 * bytes, e.g. d = 1 or 3), whose fold into f64 would otherwise cost a tenth of the loop; fewer
 * for wide groups. The loops read a cache line in two halves, in consecutive column steps,
 * and the second half comes from L1 only while the block (`arrays` arrays of it) fits there:
 * within 32 KiB, and for rows of 4 KiB, which all fall in one set of L1, within its ways
 * (measured for the f32 statistics of (256, 1024): 0.145 ns per value with blocks of 8 rows,
 * 0.160 with 16). The column sums now take groups of 4 KiB and more through their streaming
 * loops instead (statistics.ts, backward.ts).
 */
export function blockGroups(groupBytes: usize, arrays: i32): i32 {
  let rows = groupBytes <= 256 ? 2 * ROW_BLOCK : ROW_BLOCK;
  while (rows > MIN_BLOCK && <usize>(rows * arrays) * groupBytes > BLOCK_BYTES) rows >>= 1;
  return rows;
}
const BLOCK_BYTES: usize = 32 << 10;
const MIN_BLOCK: i32 = 4;

/**
 * Groups up to this size are "narrow" for the elementwise maps (normalize, backward apply):
 * those walk strips of two vectors down STRIP_GROUPS groups (twice as many when a group spans
 * several rows) with the strip's constants in registers (measured 17% and 29% faster at
 * (16384, 16); slower for 2 KiB rows and wider).
 */
export const NARROW_GROUP_BYTES: usize = 1024;
/**
 * Groups above this size have per-column constants too large to stay in L1 next to streaming
 * data (rows of 8 KiB: the backward's four arrays of constants take 32 KiB).
 */
export const WIDE_GROUP_BYTES: usize = 4096;
/** Groups per strip; even, since the strips take two groups per step. */
export const STRIP_GROUPS: i32 = 8;
/**
 * Groups of this size and more go through the column sums' streaming loops in cache too: a
 * block of them holds 4 to 8 rows (blockGroups), all in one set of L1 for rows of 4 KiB.
 */
export const SPREAD_SUM_BYTES: usize = 4096;

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

/** Inputs of at least this many bytes do not stay in cache between passes: stream them. */
export const STREAM_BYTES: u64 = 8 << 20;

/** Whether an (n, d) array of T is large enough to be streamed rather than blocked. */
export function streams<T>(n: i32, d: i32): bool {
  return <u64>n * <u64>d * sizeof<T>() >= STREAM_BYTES;
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

/**
 * Array k of the per-column arrays (d values of T each, 16-byte aligned) at the start of a work
 * area: the map a forward or backward kernel leaves for the next one; k = the number of
 * arrays gives the rest of the work area.
 */
// @ts-ignore: decorator
@inline export function columnArray<T>(work: usize, d: i32, k: i32): usize {
  return work + <usize>k * ((<usize>d * sizeof<T>() + 15) & ~(<usize>15));
}

/** The address `bytes` (rounded up to 16) past p: carves a work area into pieces. */
// @ts-ignore: decorator
@inline export function after(p: usize, bytes: usize): usize {
  return p + ((bytes + 15) & ~(<usize>15));
}

/** Upper bound of the work area any kernel takes for d columns of T. */
export function workBytes<T>(d: i32): usize {
  const e = <usize>groupLength<T>(d);
  // column arrays: ≤ 4 of f64 and 4 of T; patterns: ≤ 2 of f64 and 4 of T; alignment slack.
  return (<usize>d) * 64 + e * 48 + 16 * 16;
}
