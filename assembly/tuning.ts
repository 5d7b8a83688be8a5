// Every threshold that picks a loop, and the choice itself. Each is named with the reason it
// exists; the measurements behind the values are in docs/tuning.md (dated, machine named).
// The build copies the constants into src/generated/tuning.ts, so that the tests derive a
// shape for each loop from the values here (test/tuning.test.ts).

/** Groups (or rows) summed in T before their partial sums are folded into f64 accumulators. */
export const ROW_BLOCK: i32 = 16;
/**
 * The same for the streaming sum loops beyond the caches: fewer folds into f64 there; in
 * cache longer blocks raise the worst float32 variance, so there it stays ROW_BLOCK.
 */
export const STREAM_BLOCK: i32 = 32;
/** A blocked loop's block (its `arrays` arrays of groups) stays within L1. */
export const BLOCK_BYTES: i32 = 32 << 10;
/** The fewest groups per block, however wide a group. */
export const MIN_BLOCK: i32 = 4;
/** Groups up to this size get blocks of 2·ROW_BLOCK: their fold into f64 is a large share. */
export const NARROW_BLOCK_BYTES: i32 = 256;
/**
 * Groups up to this size are "narrow" for the elementwise maps (normalize, backward apply):
 * strips of two vectors down STRIP_GROUPS groups with the strip's constants in registers.
 */
export const NARROW_GROUP_BYTES: i32 = 1024;
/** Groups above this size have constants too large to stay in L1 beside streaming data. */
export const WIDE_GROUP_BYTES: i32 = 4096;
/** Groups per strip; even, since the strips take two groups per step. */
export const STRIP_GROUPS: i32 = 8;
/** Groups of this size and more go through the column sums' streaming loops in cache too. */
export const SPREAD_SUM_BYTES: i32 = 4096;
/** Inputs of at least this many bytes do not stay in cache between passes: stream them. */
export const STREAM_BYTES: i32 = 8 << 20;
/** Beyond the caches the statistics stream groups of this size and more (narrower: blocked). */
export const STREAM_STATISTICS_BYTES: i32 = 1024;
/** Beyond the caches the gradient sums stream groups of this size and more. */
export const STREAM_GRADIENT_BYTES: i32 = 256;

/** Whether an (n, d) array of T is large enough to be streamed rather than blocked. */
export function streams<T>(n: i32, d: i32): bool {
  return <u64>n * <u64>d * sizeof<T>() >= <u64>STREAM_BYTES;
}

/** Groups per fold into f64 in the column sums' streaming loops. */
// @ts-ignore: decorator
@inline export function foldBlock(stream: bool): i32 {
  return stream ? STREAM_BLOCK : ROW_BLOCK;
}

/**
 * Groups per block in the blocked loops: ROW_BLOCK, twice that for narrow groups, fewer for
 * wide groups, so that a block of `arrays` arrays stays within L1 (a cache line is read in two
 * halves, in consecutive column steps; the second half must still be in L1).
 */
export function blockGroups(groupBytes: usize, arrays: i32): i32 {
  let rows = groupBytes <= <usize>NARROW_BLOCK_BYTES ? 2 * ROW_BLOCK : ROW_BLOCK;
  while (rows > MIN_BLOCK && <usize>(rows * arrays) * groupBytes > <usize>BLOCK_BYTES) rows >>= 1;
  return rows;
}

/** Whether the statistics take the streaming sum loop (else the blocked one). */
export function streamsStatistics(groupBytes: usize, stream: bool): bool {
  return (stream && groupBytes >= <usize>STREAM_STATISTICS_BYTES) || groupBytes >= <usize>SPREAD_SUM_BYTES;
}

/** Whether the gradient sums take the streaming sum loop (else the blocked one). */
export function streamsGradients(groupBytes: usize, stream: bool): bool {
  return (stream && groupBytes >= <usize>STREAM_GRADIENT_BYTES) || groupBytes >= <usize>SPREAD_SUM_BYTES;
}

/** Whether the streaming gradient sums take four groups a quarter apart (else two adjacent). */
export function gradientQuarters(groupBytes: usize, stream: bool): bool {
  return !stream || groupBytes > <usize>WIDE_GROUP_BYTES;
}

/**
 * The elementwise maps (normalize, backward apply) walk, in order: strips of STRIP_GROUPS
 * narrow groups (twice as many for groups spanning several rows, d = 1, 3, …) where stripsOf,
 * then groups four at a time a quarter apart where quartersOf, then the rest in order.
 */
// @ts-ignore: decorator
@inline export function stripsOf(groupBytes: usize, stream: bool): bool {
  return !stream && groupBytes <= <usize>NARROW_GROUP_BYTES;
}

/** Whether the elementwise maps take groups four at a time, a quarter of the rest apart. */
// @ts-ignore: decorator
@inline export function quartersOf(groupBytes: usize, stream: bool): bool {
  return !stream || groupBytes > <usize>WIDE_GROUP_BYTES;
}
