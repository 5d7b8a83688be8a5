// Input checks shared by the functional API and the layer. Every message names the argument
// and what was expected; nothing is read or written before all checks pass.
import { type Dtype, type FloatArray, dtypeOf, typeName } from "./dtype.js";

export type Mode = "train" | "test";

function describe(value: unknown): string {
  if (value === null) return "null";
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  if (Array.isArray(value)) return "an Array";
  return typeof value === "object" ? `an object (${(value as object).constructor?.name ?? "Object"})` : `a ${typeof value}`;
}

/** A Float32Array or Float64Array, not detached. `dtype`, when given, must match. */
export function floatArray(name: string, value: unknown, dtype?: Dtype): FloatArray {
  if (!(value instanceof Float32Array || value instanceof Float64Array)) {
    throw new TypeError(`${name} must be a Float32Array or Float64Array, got ${describe(value)}`);
  }
  if (dtype !== undefined && dtypeOf(value) !== dtype) {
    throw new TypeError(
      `${name} is a ${typeName(dtypeOf(value))} but the input is a ${typeName(dtype)}; float32 and float64 are never mixed`,
    );
  }
  if (value.length === 0 && value.buffer.byteLength === 0 && value.byteOffset === 0) {
    // An engine detaches every view of a WebAssembly memory when that memory grows.
    throw new RangeError(
      `${name} is an empty or detached array (a view of WebAssembly memory is detached when the memory grows: take a fresh view after each call)`,
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
    throw new RangeError(`bnParam.mode must be 'train' or 'test', got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

export function eps(value: unknown, name = "bnParam.eps"): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number ≥ 0, got ${String(value)}`);
  }
  return value;
}

export function momentum(value: unknown, name = "bnParam.momentum"): number {
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) {
    throw new RangeError(`${name} must be a number in [0, 1], got ${String(value)}`);
  }
  return value;
}

export function positiveInteger(name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}
