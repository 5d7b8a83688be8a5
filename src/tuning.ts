// The TypeScript side's thresholds, each with its reason; the kernels' are in
// assembly/tuning.ts, the measurements behind both in docs/tuning.md.

/** Bytes of x in one part of a batch normalized in parts: with its output, within L2. */
export const PART_BYTES = 256 << 10;
/** Rows of a part come in multiples of this: a SIMD group spans at most 16 rows. */
export const PART_ROWS_MULTIPLE = 16;
/**
 * Arrays of 4 KiB or more in one block start this many bytes apart modulo 4 KiB: a load
 * from one array and a store to another at the same 4 KiB offset look dependent to the CPU
 * ("4K aliasing").
 */
export const ALIAS_SKEW_BYTES = 1088;
/** Fresh arrays below this size are zeroed by the plain constructor: zeroing is a small part of their cost. */
export const UNFILLED_BYTES = 64 << 10;
