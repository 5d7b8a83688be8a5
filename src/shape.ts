// How a batch maps onto the kernels' view of data: rows (n, d) when S = 1, channels-first
// (n, d, S) otherwise. Statistics are per channel over count = n·S values.
import * as check from "./validate.js";

/** Memory layout of (N, C, H, W) or (N, C, L) data: channels first (PyTorch, ONNX) or last (Keras). */
export type Layout = "NCHW" | "NHWC" | "NCL" | "NLC";

export interface Geometry {
  /** The logical shape [N, C, ...spatial]. */
  shape: number[];
  n: number;
  d: number;
  S: number;
  /** Values per channel: N·H·W. */
  count: number;
}

export function checkLayout(value: unknown, name = "layout"): Layout {
  if (value !== "NCHW" && value !== "NHWC" && value !== "NCL" && value !== "NLC") {
    throw new RangeError(`${name} must be 'NCHW', 'NHWC', 'NCL' or 'NLC', got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

export function channelsLast(layout: Layout): boolean {
  return layout === "NHWC" || layout === "NLC";
}

/**
 * The geometry of `length` values with `channels` channels. shape, when given, is the
 * logical [N, C], [N, C, L] or [N, C, H, W] whatever the layout; without it, x is (N, C).
 */
export function geometry(length: number, channels: number, shape: readonly number[] | undefined, layout: Layout, name = "x"): Geometry {
  if (shape === undefined) {
    const n = check.rowsOf(length, channels, name);
    return { shape: [n, channels], n, d: channels, S: 1, count: n };
  }
  if (!Array.isArray(shape) || shape.length < 2 || shape.length > 4) {
    throw new RangeError(`shape must be [N, C], [N, C, L] or [N, C, H, W], got ${JSON.stringify(shape)}`);
  }
  shape.forEach((v, i) => check.positiveInteger(`shape[${i}]`, v));
  if (shape[1] !== channels) {
    throw new RangeError(`shape[1] must be the number of channels, ${channels} (gamma.length), got ${shape[1]}`);
  }
  const total = shape.reduce((a, b) => a * b, 1);
  if (total !== length) {
    throw new RangeError(`${name} must have ${total} values for shape [${shape.join(", ")}], got length ${length}`);
  }
  const spatial = shape.slice(2).reduce((a, b) => a * b, 1);
  const N = shape[0];
  return channelsLast(layout)
    ? { shape: [...shape], n: N * spatial, d: channels, S: 1, count: N * spatial }
    : { shape: [...shape], n: N, d: channels, S: spatial, count: N * spatial };
}
