// The allocator under every buffer: blocks never overlap, freed space is reused and merged,
// and a request past 4 GiB is refused without changing anything.
import { expect, test } from "vitest";
import { Heap, JsMemory, layout, PAGE_BYTES } from "../src/memory.js";
import { randn } from "./helpers.js";

test("random allocations and frees never overlap, stay 16-byte aligned, and are reused", () => {
  const heap = new Heap(new JsMemory(), 16);
  const live = new Map<number, number>();
  const pick = randn(7, 4000);
  for (let step = 0; step < 4000; step++) {
    if (live.size > 0 && pick[step] < 0) {
      const ptrs = [...live.keys()];
      const ptr = ptrs[Math.floor(Math.abs(pick[step]) * 1000) % ptrs.length];
      heap.free(ptr);
      live.delete(ptr);
    } else {
      const bytes = 1 + Math.floor(Math.abs(pick[step]) * 20000);
      const ptr = heap.alloc(bytes);
      expect(ptr % 16).toBe(0);
      expect(ptr).toBeGreaterThanOrEqual(16);
      expect(ptr + bytes).toBeLessThanOrEqual(heap.memory.buffer.byteLength);
      for (const [other, size] of live) expect(ptr + bytes <= other || other + size <= ptr, `overlap at ${ptr}`).toBe(true);
      live.set(ptr, bytes);
    }
  }
  for (const ptr of live.keys()) heap.free(ptr);
  expect(heap.allocatedBytes).toBe(0);
  // Everything was merged back: one block as large as the most ever used fits at the start.
  const size = heap.memory.buffer.byteLength;
  expect(heap.alloc(size - 16)).toBe(16);
  expect(heap.memory.buffer.byteLength).toBe(size);
});

test("a request past 4 GiB is refused and changes nothing", () => {
  const heap = new Heap(new JsMemory(), 16);
  const a = heap.alloc(1000);
  expect(() => heap.alloc(2 ** 32)).toThrow(/cannot allocate 4294967296 bytes: the module's memory would exceed 4 GiB/);
  expect(heap.allocatedBytes).toBe(1008);
  expect(heap.memory.buffer.byteLength).toBe(PAGE_BYTES);
  expect(heap.alloc(1000)).toBe(a + 1008);
  expect(() => heap.free(12345)).toThrow(/free of unknown block/);
});

test("layout places large arrays apart modulo 4 KiB and small ones 16-byte aligned", () => {
  const { offsets, bytes } = layout({ x: ["float32", 1024 * 64], out: ["float32", 1024 * 64], mean: ["float64", 3], var: ["float32", 5] });
  expect(offsets.x % 4096).not.toBe(offsets.out % 4096);
  expect(offsets.out).toBeGreaterThanOrEqual(offsets.x + 4 * 1024 * 64);
  expect(offsets.var).toBe(offsets.mean + 32);
  expect(bytes).toBe(offsets.var + 32);
});
