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
/**
 * Batches of fewer bytes than this run on the caller's thread alone, whatever the thread
 * count: a fork and join of the pool costs more than the time two threads save below it
 * (measured in docs/threads.md).
 */
export const THREAD_MIN_BYTES = 512 << 10;
/** A thread's part of a batch of rows is a multiple of this many rows (as PART_ROWS_MULTIPLE). */
export const THREAD_ROWS_MULTIPLE = 16;
/**
 * The fused ReLU's backward of channels-first data goes channel by channel (sums, map and dx
 * of one channel while its runs of x and dout are in L2: read from memory once, not twice)
 * when a channel's x and dout together take at most this many bytes (measured in docs/fusion.md)...
 */
export const CHANNEL_BACKWARD_BYTES = 256 << 10;
/**
 * ...and its runs (S values each) at least this many: shorter runs, a whole item apart, share
 * their cache lines with other channels, which the channel-by-channel order reads again.
 */
export const CHANNEL_RUN_BYTES = 1024;
