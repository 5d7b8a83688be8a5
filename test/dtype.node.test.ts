// Fresh arrays for outputs (src/dtype.ts, unfilled): in Node, large ones skip calloc's zeroing;
// each must still be an ordinary array that owns exactly its buffer, at every size.
import { expect, test, vi } from "vitest";
import { unfilled } from "../src/dtype.js";

test.each([
  [false, 1], [false, 16383], [false, 16384], [true, 8192], [true, 300_001],
])("unfilled(f64 = %s, %i): the right type and length, its own whole buffer", (f64, n) => {
  const a = unfilled(f64, n);
  expect(a).toBeInstanceOf(f64 ? Float64Array : Float32Array);
  expect([a.length, a.byteOffset, a.buffer.byteLength]).toEqual([n, 0, n * a.BYTES_PER_ELEMENT]);
  a.fill(1.5);
  expect(a[n - 1]).toBe(1.5);
});

test("arrays under 64 KiB are the plain constructor's, zeroed; from 64 KiB on Buffer's unzeroed memory", () => {
  const slow = vi.spyOn(Buffer, "allocUnsafeSlow");
  try {
    expect(unfilled(false, 16383).every((v) => v === 0)).toBe(true);
    expect(unfilled(true, 8191).every((v) => v === 0)).toBe(true);
    expect(slow).not.toHaveBeenCalled();
    unfilled(false, 16384);
    unfilled(true, 8192);
    expect(slow.mock.calls).toEqual([[65536], [65536]]);
  } finally {
    slow.mockRestore();
  }
});

test("beyond Buffer's size limit (over 4 GiB) an ordinary array is made", () => {
  // Virtual memory only: the pages are never touched.
  const n = 2 ** 30 + 4;
  const a = unfilled(false, n);
  expect([a.length, a.byteOffset]).toEqual([n, 0]);
});
