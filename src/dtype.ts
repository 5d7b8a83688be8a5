// The two element types the package works in. float32 and float64 are never mixed.
import { UNFILLED_BYTES } from "./tuning.js";
/** The arrays the package takes and returns: every array of one call has the same type. */
export type FloatArray = Float32Array | Float64Array;
/** The element type of a layer or a call: "float32" (Float32Array) or "float64" (Float64Array). */
export type Dtype = "float32" | "float64";
/** The array type of a dtype: ArrayOf<"float32"> is Float32Array. */
export type ArrayOf<D extends Dtype> = D extends "float64" ? Float64Array : Float32Array;

export function dtypeOf(a: FloatArray): Dtype {
  return a instanceof Float64Array ? "float64" : "float32";
}

export function bytesPerElement(dtype: Dtype): 4 | 8 {
  return dtype === "float64" ? 8 : 4;
}

export function arrayType(dtype: Dtype): Float32ArrayConstructor | Float64ArrayConstructor {
  return dtype === "float64" ? Float64Array : Float32Array;
}

export function typeName(dtype: Dtype): string {
  return dtype === "float64" ? "Float64Array" : "Float32Array";
}

/**
 * A new array with a[from .. from + n), all of a by default. Faster in V8 than slice() or
 * subarray(), which look up a species constructor (a.constructor is not inlined): the
 * constructors are named here (see docs/tuning.md).
 */
export function copyOf<A extends FloatArray>(a: A, from = 0, n = a.length - from): A {
  const copy = unfilled(a instanceof Float64Array, n) as A;
  copyInto(copy, 0, a, from, n);
  return copy;
}

/** Node's Buffer, where there is one (not in browsers). */
const nodeBuffer = (globalThis as { Buffer?: { allocUnsafeSlow?: (bytes: number) => Uint8Array } }).Buffer;
/** Buffer's size limit is 2 or 4 GiB, by Node version; typed arrays go beyond it. */
const BUFFER_MAX_BYTES = 2 ** 31 - 1;

/**
 * A new Float64Array (f64) or Float32Array of n elements, for a caller that writes every element
 * before anyone sees it. In Node, large ones come from Buffer.allocUnsafeSlow: calloc zeroes
 * reused memory first, a pass over the array that a copy makes anyway (see UNFILLED_BYTES in
 * docs/tuning.md). The array still owns its whole, unpooled buffer.
 * Elsewhere it is an ordinary zeroed array.
 */
export function unfilled(f64: boolean, n: number): FloatArray {
  const bytes = n * (f64 ? 8 : 4);
  if (bytes >= UNFILLED_BYTES && bytes <= BUFFER_MAX_BYTES && nodeBuffer?.allocUnsafeSlow) {
    const b = nodeBuffer.allocUnsafeSlow(bytes);
    if (b.byteOffset === 0 && b.buffer.byteLength === bytes) return f64 ? new Float64Array(b.buffer) : new Float32Array(b.buffer);
  }
  return f64 ? new Float64Array(n) : new Float32Array(n);
}

/** dst[at .. at + n) = src[from .. from + n): short runs element by element, long ones with set(). */
export function copyInto(dst: FloatArray, at: number, src: FloatArray, from: number, n: number): void {
  if (n <= 64) {
    for (let i = 0; i < n; i++) dst[at + i] = src[from + i];
  } else if (from === 0 && n === src.length) {
    dst.set(src, at);
  } else {
    const buffer = src.buffer as ArrayBuffer;
    const offset = src.byteOffset + from * src.BYTES_PER_ELEMENT;
    dst.set(src instanceof Float64Array ? new Float64Array(buffer, offset, n) : new Float32Array(buffer, offset, n), at);
  }
}
