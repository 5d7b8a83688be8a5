// Input checks shared by the functional API and the layer. Every message names the argument
// and what was expected; nothing is read or written before all checks pass.
import { type Dtype, type FloatArray, dtypeOf, typeName } from "./dtype.js";
import type { Activation } from "./kernels.js";
import { sameMemory } from "./memory.js";

export type Mode = "train" | "test";

/** "a Float32Array", "an Int32Array". */
function article(noun: string): string {
  return `${/^[aeiou]/i.test(noun) ? "an" : "a"} ${noun}`;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (ArrayBuffer.isView(value)) return article(value.constructor.name);
  if (Array.isArray(value)) return "an Array";
  return typeof value === "object" ? `an object (${(value as object).constructor?.name ?? "Object"})` : article(typeof value);
}

/** A value as messages show it: strings quoted, so that "0.9" and 0.9 look different. */
export function shown(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "object" && value !== null) return describe(value);
  return String(value);
}

/** Edits (insertions, deletions, substitutions, swaps of neighbours) between a and b. */
function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) next[j] = Math.min(next[j], before[j - 2] + 1);
    }
    [before, row] = [row, next];
  }
  return row[b.length];
}

/**
 * The known key a misspelt one most likely meant: the same letters up to case and _ or -, an
 * abbreviation (eps for epsilon), or the nearest within 1 edit (short keys) or 2.
 */
function meant(key: string, keys: readonly string[]): string | undefined {
  const plain = (k: string) => k.toLowerCase().replace(/[_-]/g, "");
  const same = keys.find((k) => plain(k) === plain(key));
  if (same) return same;
  const longer = plain(key).length >= 3 ? keys.find((k) => plain(k).startsWith(plain(key))) : undefined;
  if (longer) return longer;
  let best: string | undefined;
  let bestDistance = key.length < 5 ? 2 : 3;
  for (const k of keys) {
    const distance = editDistance(plain(key), plain(k));
    if (distance < bestDistance) [best, bestDistance] = [k, distance];
  }
  return best;
}

/**
 * Refuses keys of an options object that are not in `keys`: a misspelt option (momentun,
 * running_mean, eps for Keras' epsilon) would otherwise be ignored without a word.
 */
export function knownKeys(name: string, value: object, keys: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (keys.includes(key)) continue;
    const guess = meant(key, keys);
    throw new TypeError(
      `${name} has no option ${JSON.stringify(key)}${guess ? ` (did you mean '${guess}'?)` : ""}; its options are ${keys.join(", ")}`,
    );
  }
}

/** What an empty array named `name` should have held, for the message that refuses it. */
function wanted(name: string): string {
  if (name === "x" || name === "dout" || name.endsWith(".x") || name.startsWith("x ")) return "N·D values";
  if (name === "gamma" || name === "beta") return "D values, one per feature";
  return "at least one value";
}

/** Whether buffer is detached (transferred, or the old buffer of a grown WebAssembly memory). */
function isDetached(buffer: ArrayBufferLike): boolean {
  const detached = (buffer as { detached?: unknown }).detached;
  if (typeof detached === "boolean") return detached;
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

/**
 * A Float32Array or Float64Array, not detached. `dtype`, when given, must match; `dtypeFrom`
 * says where that dtype comes from ("this layer"), for the message when it does not.
 */
export function floatArray(name: string, value: unknown, dtype?: Dtype, dtypeFrom?: string): FloatArray {
  if (!(value instanceof Float32Array || value instanceof Float64Array)) {
    throw new TypeError(`${name} must be a Float32Array or Float64Array, got ${describe(value)}`);
  }
  if (dtype !== undefined && dtypeOf(value) !== dtype) {
    throw new TypeError(
      dtypeFrom !== undefined
        ? `${dtypeFrom} is ${dtype}: ${name} must be ${article(typeName(dtype))}, got ${article(typeName(dtypeOf(value)))}`
        : `${name} is a ${typeName(dtypeOf(value))} but the input is a ${typeName(dtype)}; float32 and float64 are never mixed`,
    );
  }
  if (value.length === 0 && value.buffer.byteLength === 0 && value.byteOffset === 0) {
    // An engine detaches every view of a WebAssembly memory when that memory grows. A fresh
    // empty array is told apart from a detached view by ArrayBuffer's `detached` where it
    // exists (Node 22, current browsers), else by a view of the buffer, which a detached one refuses.
    if (!isDetached(value.buffer)) throw new RangeError(`${name} is empty: it must have ${wanted(name)}`);
    throw new RangeError(
      `${name} is a detached array (a view of WebAssembly memory is detached when the memory grows: take a fresh view after each call)`,
    );
  }
  return value;
}

/** A float array of exactly `length` values of the given dtype. */
export function floatArrayOfLength(name: string, value: unknown, dtype: Dtype, length: number, shape: string): FloatArray {
  const a = floatArray(name, value, dtype);
  if (a.length !== length) throw new RangeError(`${name} must have length ${length} (${shape}), got length ${a.length}`);
  return a;
}

/** The (N, D) shape of row-major x with D = gamma.length. */
export function rowsOf(length: number, d: number, name = "x"): number {
  if (length === 0 || length % d !== 0) {
    throw new RangeError(`${name} must have a positive multiple of D = ${d} values (N·D, row-major), got length ${length}`);
  }
  return length / d;
}

export function mode(value: unknown): Mode {
  if (value !== "train" && value !== "test") {
    throw new RangeError(`bnParam.mode must be 'train' or 'test', got ${shown(value)}`);
  }
  return value;
}

/** An activation to fuse: absent is 'none'. */
export function activation(value: unknown, name = "bnParam.activation"): Activation {
  if (value === undefined) return "none";
  if (value !== "none" && value !== "relu") {
    throw new RangeError(`${name} must be 'relu' or 'none' (the only activations fused), got ${shown(value)}`);
  }
  return value;
}

export function eps(value: unknown, name = "bnParam.eps"): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number ≥ 0, got ${shown(value)}`);
  }
  return value;
}

export function momentum(value: unknown, name = "bnParam.momentum"): number {
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) {
    throw new RangeError(`${name} must be a number in [0, 1], got ${shown(value)}`);
  }
  return value;
}

export function positiveInteger(name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${shown(value)}`);
  }
  return value;
}

/** That a call can set target[key] (a frozen or sealed bnParam cannot take new keys): checked before any change. */
export function settable(name: string, target: object, key: string): void {
  const own = Object.getOwnPropertyDescriptor(target, key);
  const ok = own ? own.writable === true || own.set !== undefined : Object.isExtensible(target);
  if (!ok) throw new TypeError(`${name}.${key} cannot be set (is ${name} frozen or sealed?); a train call sets it`);
}

/** Whether two arrays share any byte of memory (views of two buffers of one shared memory too). */
export function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return sameMemory(a.buffer, b.buffer) && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/**
 * An output array given by the caller: `length` values of dtype, sharing no memory with any
 * of `inputs`, except those named in `mayBe` when it is exactly that array (same memory).
 */
export function output(
  name: string, value: unknown, dtype: Dtype, length: number, inputs: Record<string, FloatArray | null | undefined>, mayBe: readonly string[],
): FloatArray {
  const a = floatArray(name, value, dtype);
  if (a.length !== length) throw new RangeError(`${name} must have length ${length}, got length ${a.length}`);
  for (const [input, b] of Object.entries(inputs)) {
    if (!b || !overlaps(a, b)) continue;
    if (mayBe.includes(input) && a.byteOffset === b.byteOffset && a.length === b.length) continue;
    throw new RangeError(
      `${name} shares memory with ${input}${mayBe.includes(input) ? " (it may be that very array, not a part of it)" : ""}: an output must not overlap this call's inputs`,
    );
  }
  return a;
}
