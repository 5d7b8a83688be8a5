// Every loop the kernels choose between (assembly/tuning.ts) on a shape derived from the
// thresholds themselves, so that moving a threshold moves its test with it. Each shape runs
// on the SIMD build and is checked against the plain-JS backend (two float64 passes).
import { describe, expect, test } from "vitest";
import type { Dtype } from "../src/dtype.js";
import { type Backend, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync } from "../src/index.js";
import * as T from "../src/generated/tuning.js";
import { expectClose, expectRelClose, randn, tolerance, typed } from "./helpers.js";

/**
 * Shapes whose groups are `groupBytes` long (d a multiple of the vector, so a group is one
 * row; the rows-per-group cases name their d), in cache or beyond it (`streams`).
 */
function loops(dtype: Dtype) {
  const size = dtype === "float64" ? 8 : 4;
  const columns = (groupBytes: number) => groupBytes / size;
  const streamedRows = (d: number) => Math.ceil(T.STREAM_BYTES / (d * size)) + 5;
  return [
    // Elementwise maps (normalize, backward apply) and the blocked column sums in cache.
    { loop: "narrow strips, one row per group", n: 4 * T.STRIP_GROUPS + 3, d: columns(T.NARROW_GROUP_BYTES) },
    { loop: "narrow strips of twice the height, several rows per group (d = 3)", n: 64 * T.STRIP_GROUPS + 5, d: 3 },
    { loop: "narrow blocks of 2·ROW_BLOCK groups", n: 8 * T.ROW_BLOCK + 1, d: columns(T.NARROW_BLOCK_BYTES) },
    { loop: "quarters in cache, blocked sums", n: 4 * T.ROW_BLOCK + 3, d: columns(2 * T.NARROW_GROUP_BYTES) },
    { loop: "column sums streamed in cache (SPREAD_SUM_BYTES)", n: 2 * T.STREAM_BLOCK + 7, d: columns(T.SPREAD_SUM_BYTES) },
    // Beyond the caches.
    { loop: "streamed in order; statistics streamed", n: streamedRows(columns(T.STREAM_STATISTICS_BYTES)), d: columns(T.STREAM_STATISTICS_BYTES) },
    { loop: "streamed; statistics blocked, gradient sums streamed", n: streamedRows(columns(T.STREAM_GRADIENT_BYTES)), d: columns(T.STREAM_GRADIENT_BYTES) },
    { loop: "streamed; gradient sums blocked", n: streamedRows(columns(T.STREAM_GRADIENT_BYTES / 2)), d: columns(T.STREAM_GRADIENT_BYTES / 2) },
    { loop: "streamed, wide groups in quarters", n: streamedRows(columns(2 * T.WIDE_GROUP_BYTES)), d: columns(2 * T.WIDE_GROUP_BYTES) },
  ];
}

function run(backend: Backend, x: Float32Array | Float64Array, gamma: typeof x, beta: typeof x, dout: typeof x) {
  initSync({ backend });
  const bnParam = { mode: "train" as const };
  const train = batchnormForward(x, gamma, beta, bnParam);
  return {
    out: train.out, variance: train.cache!.variance, test: batchnormForward(x, gamma, beta, { ...bnParam, mode: "test" }).out,
    compact: batchnormBackwardAlt(dout, train.cache!), graph: batchnormBackward(dout, train.cache!),
  };
}

describe.each(["float32", "float64"] as Dtype[])("%s", (dtype) => {
  test("the shapes are where the thresholds say", () => {
    const size = dtype === "float64" ? 8 : 4;
    const shapes = loops(dtype);
    expect(shapes.filter(({ n, d }) => n * d * size >= T.STREAM_BYTES).length).toBe(4);
    expect(shapes.every(({ d }) => d >= 1 && Number.isInteger(d))).toBe(true);
  });

  test.each(loops(dtype))("$loop: ($n, $d)", ({ n, d }) => {
    const seed = n + d;
    const x = typed(dtype, randn(seed, n * d, 3, 2));
    const gamma = typed(dtype, randn(seed + 1, d, 1, 0.5));
    const beta = typed(dtype, randn(seed + 2, d));
    const dout = typed(dtype, randn(seed + 3, n * d));
    const simd = run("simd", x, gamma, beta, dout);
    const js = run("js", x, gamma, beta, dout);
    const tol = tolerance(dtype);
    expectClose(simd.out, js.out, tol.abs, "out");
    expectClose(simd.test, js.test, tol.abs * 8, "test-mode out");
    expectRelClose(simd.variance, js.variance, tol.rel, "variance");
    for (const form of ["compact", "graph"] as const) {
      expectRelClose(simd[form].dx, js[form].dx, 4 * tol.rel, `${form} dx`);
      expectRelClose(simd[form].dgamma, js[form].dgamma, tol.rel, `${form} dgamma`);
      expectRelClose(simd[form].dbeta, js[form].dbeta, tol.rel, `${form} dbeta`);
    }
  });
});
