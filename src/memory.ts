// A first-fit allocator over a growable linear memory: the WebAssembly module's memory, or
// for the 'js' backend a resizable ArrayBuffer with the same contract.
//
// Lifetime rule: when a WebAssembly memory grows, its old ArrayBuffer is detached and every
// view on it reads as empty. So nothing here keeps a view: `view()` builds one on the
// current buffer, and callers take it after the last allocation they make.
import { type Dtype, type FloatArray, arrayType, bytesPerElement } from "./dtype.js";
import { ALIAS_SKEW_BYTES } from "./tuning.js";

export interface GrowableMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

export const PAGE_BYTES = 65536;
/** wasm32 addresses 4 GiB; the 'js' backend keeps the same limit so backends agree. */
export const MAX_PAGES = 65536;
const ALIGN = 16;

/** The 'js' backend's memory: a resizable ArrayBuffer, so its views never go stale. */
export class JsMemory implements GrowableMemory {
  readonly buffer: ArrayBuffer;
  constructor(initialPages = 1) {
    this.buffer = new ArrayBuffer(initialPages * PAGE_BYTES, { maxByteLength: MAX_PAGES * PAGE_BYTES });
  }
  grow(pages: number): number {
    const before = this.buffer.byteLength / PAGE_BYTES;
    this.buffer.resize((before + pages) * PAGE_BYTES);
    return before;
  }
}

interface Block {
  ptr: number;
  bytes: number;
}

/**
 * Each buffer a shared memory has had, to that memory. Growing a shared memory does not
 * detach the old buffer: a view of it keeps the old length and still reads and writes the
 * same bytes, but is not `===` the new buffer. This says which memory such a view is of.
 */
const sharedMemoryOf = new WeakMap<ArrayBufferLike, GrowableMemory>();

function isShared(buffer: ArrayBufferLike): boolean {
  return typeof SharedArrayBuffer === "function" && buffer instanceof SharedArrayBuffer;
}

/** Whether two buffers are the same memory: the same buffer, or two buffers of one shared memory. */
export function sameMemory(a: ArrayBufferLike, b: ArrayBufferLike): boolean {
  if (a === b) return true;
  const memory = sharedMemoryOf.get(a);
  return memory !== undefined && memory === sharedMemoryOf.get(b);
}

export class Heap {
  /** Free blocks below `top`, sorted by address, never adjacent to each other or to `top`. */
  private readonly freeBlocks: Block[] = [];
  private readonly sizes = new Map<number, number>();
  private top: number;
  private current: ArrayBuffer;
  private whole: Partial<Record<Dtype, FloatArray>> = {};

  constructor(readonly memory: GrowableMemory, base: number) {
    this.top = roundUp(base);
    this.current = memory.buffer;
    this.remember();
  }

  /** Records the current buffer of a shared memory (see sharedMemoryOf). */
  private remember(): void {
    if (isShared(this.current)) sharedMemoryOf.set(this.current, this.memory);
  }

  /**
   * Whether `a` is a view of this memory: of its current buffer, or (a shared memory) of a
   * buffer it had before it grew, which still holds the same bytes.
   */
  owns(a: ArrayBufferView): boolean {
    return a.buffer === this.current || sharedMemoryOf.get(a.buffer) === this.memory;
  }

  /**
   * The memory's buffer as of the last growth. Only ensure() grows the memory (the kernels
   * never do), so this is memory.buffer without the cost of that getter on each call.
   */
  get buffer(): ArrayBuffer {
    return this.current;
  }

  /** Bytes handed out and not yet freed. */
  get allocatedBytes(): number {
    let sum = 0;
    for (const bytes of this.sizes.values()) sum += bytes;
    return sum;
  }

  /** A 16-byte aligned block of at least `bytes` bytes. Throws a RangeError past 4 GiB. */
  alloc(bytes: number): number {
    const size = roundUp(Math.max(bytes, ALIGN));
    for (let i = 0; i < this.freeBlocks.length; i++) {
      const block = this.freeBlocks[i];
      if (block.bytes < size) continue;
      const ptr = block.ptr;
      if (block.bytes === size) this.freeBlocks.splice(i, 1);
      else {
        block.ptr += size;
        block.bytes -= size;
      }
      this.sizes.set(ptr, size);
      return ptr;
    }
    // Extend at the top, reusing a free block that ends there.
    const last = this.freeBlocks[this.freeBlocks.length - 1];
    let ptr = this.top;
    if (last && last.ptr + last.bytes === this.top) {
      ptr = last.ptr;
      this.freeBlocks.pop();
    }
    const end = ptr + size;
    this.ensure(end, bytes);
    this.top = end;
    this.sizes.set(ptr, size);
    return ptr;
  }

  /**
   * Memory for the duration of one synchronous call: `bytes` above every live block, 16-byte
   * aligned. Nothing to free; the next alloc() or scratch() may reuse it.
   */
  scratch(bytes: number): number {
    const ptr = this.top;
    this.ensure(ptr + roundUp(bytes), bytes);
    return ptr;
  }

  free(ptr: number): void {
    const size = this.sizes.get(ptr);
    if (size === undefined) throw new Error(`internal: free of unknown block ${ptr}`);
    this.sizes.delete(ptr);
    const blocks = this.freeBlocks;
    if (ptr + size === this.top) {
      // The last block (the common case: a call's block freed at its end) lowers the top,
      // together with a free block just below it.
      this.top = ptr;
      const last = blocks[blocks.length - 1];
      if (last && last.ptr + last.bytes === ptr) {
        this.top = last.ptr;
        blocks.pop();
      }
      return;
    }
    let i = 0;
    while (i < blocks.length && blocks[i].ptr < ptr) i++;
    blocks.splice(i, 0, { ptr, bytes: size });
    const next = blocks[i + 1];
    if (next && ptr + size === next.ptr) {
      blocks[i].bytes += next.bytes;
      blocks.splice(i + 1, 1);
    }
    const prev = blocks[i - 1];
    if (prev && prev.ptr + prev.bytes === ptr) {
      prev.bytes += blocks[i].bytes;
      blocks.splice(i, 1);
    }
  }

  /**
   * A view of the whole memory (element i at byte i·size), kept until the memory grows: a
   * call copies in and out through it without making a view of its own.
   */
  all(dtype: Dtype): FloatArray {
    return (this.whole[dtype] ??= new (arrayType(dtype))(this.current));
  }

  /**
   * A way back to `a` after an allocation: growth detaches every view of the old buffer,
   * a caller's input among them when it is a view of this memory (a workspace's x). Take it
   * before the allocation, call it after. A view of a shared memory's older buffer (not
   * detached, but not the current buffer) comes back on the current buffer too.
   */
  pin<A extends FloatArray>(a: A): () => A {
    if (!this.owns(a)) return () => a;
    const { byteOffset, length } = a;
    const f64 = a instanceof Float64Array;
    return () => (a.buffer === this.current ? a : (f64 ? new Float64Array(this.current, byteOffset, length) : new Float32Array(this.current, byteOffset, length)) as A);
  }

  /** A view of `length` elements at ptr, on the memory's current buffer. */
  view(dtype: Dtype, ptr: number, length: number): FloatArray {
    return new (arrayType(dtype))(this.current, ptr, length);
  }

  private ensure(end: number, requested: number): void {
    const have = this.current.byteLength;
    if (end <= have) return;
    const pages = Math.ceil((end - have) / PAGE_BYTES);
    const limit = MAX_PAGES * PAGE_BYTES;
    const fail = () =>
      new RangeError(
        `batchnorm-wasm: cannot allocate ${requested} bytes: the module's memory would exceed ` +
          `${limit / 2 ** 30} GiB (the wasm32 limit) or the engine refused to grow it`,
      );
    if (end > limit) throw fail();
    try {
      this.memory.grow(pages);
    } catch {
      throw fail();
    } finally {
      this.current = this.memory.buffer;
      this.remember();
      this.whole = {};
    }
  }
}

function roundUp(bytes: number): number {
  return Math.ceil(bytes / ALIGN) * ALIGN;
}

/**
 * Lays out named arrays in one block, each 16-byte aligned; returns byte offsets and total.
 * Arrays of 4 KiB or more start at distinct offsets modulo 4 KiB (see ALIAS_SKEW_BYTES).
 */
export function layout<K extends string>(parts: Record<K, [Dtype, number]>): { offsets: Record<K, number>; bytes: number } {
  const offsets = {} as Record<K, number>;
  let bytes = 0;
  let large = 0;
  for (const key of Object.keys(parts) as K[]) {
    const [dtype, length] = parts[key];
    const size = length * bytesPerElement(dtype);
    if (size >= 4096) {
      const skew = (large++ * ALIAS_SKEW_BYTES) % 4096;
      bytes = Math.ceil(bytes / 4096) * 4096 + skew;
    }
    offsets[key] = bytes;
    bytes += roundUp(size);
  }
  return { offsets, bytes };
}
