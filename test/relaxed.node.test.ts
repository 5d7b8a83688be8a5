// The relaxed-SIMD build (asconfig.json "relaxed"; fused multiply-add in the apply loops):
// chosen exactly where the engine has relaxed SIMD (Node 22+), kept off by init({ relaxed:
// false }) and on threads, and as accurate as the other builds against float64 loops written
// here. Fused and unfused rounding differ across hardware: tolerances, never bit equality.
import { afterAll, describe, expect, test } from "vitest";
import type { Dtype, FloatArray } from "../src/dtype.js";
import {
  type BNParam, GroupNorm, LayerNorm, backend, batchnormBackward, batchnormBackwardAlt, batchnormForward, init, initSync, simdBuild,
  spatialBatchnormBackward, spatialBatchnormForward,
} from "../src/index.js";
import { wasmModules } from "../src/generated/binaries.js";
import { expectClose, expectIdentical, expectRelClose, maxAbs, randn, tolerance, typed } from "./helpers.js";

afterAll(() => initSync());

/** V8 12.4 (Node 22) enabled relaxed SIMD; Node 20 has it only behind a flag. */
const relaxedHere = Number(process.versions.node.split(".")[0]) >= 22 || process.execArgv.includes("--experimental-wasm-relaxed-simd");
const EPS = 1e-5;

test("the 'simd' backend runs the relaxed build exactly where the engine has relaxed SIMD", async () => {
  expect(initSync()).toBe("simd");
  expect(simdBuild()).toBe(relaxedHere ? "relaxed" : "simd");
  expect(await init({ backend: "simd", relaxed: true })).toBe("simd");
  expect(simdBuild()).toBe(relaxedHere ? "relaxed" : "simd");
});

test("relaxed: false keeps the plain SIMD build; threads run it too; scalar and js have none", async () => {
  initSync({ relaxed: false });
  expect(backend()).toBe("simd");
  expect(simdBuild()).toBe("simd");
  await init({ threads: 2 });
  expect(simdBuild()).toBe("simd");
  initSync({ backend: "scalar" });
  expect(simdBuild()).toBeNull();
  initSync({ backend: "js" });
  expect(simdBuild()).toBeNull();
  // Two engines, one per build, each kept: layers made on either keep theirs.
  initSync({ relaxed: false });
  const plain = new LayerNorm(4).engine;
  initSync();
  const relaxed = new LayerNorm(4).engine;
  expect(plain === relaxed).toBe(!relaxedHere);
  initSync({ relaxed: false });
  expect(new LayerNorm(4).engine).toBe(plain);
});

test("relaxed must be true or false, refused before the active engine changes", () => {
  initSync({ backend: "scalar" });
  for (const bad of [1, "yes", null]) {
    expect(() => initSync({ backend: "simd", relaxed: bad as unknown as boolean })).toThrow(TypeError);
    expect(() => initSync({ backend: "simd", relaxed: bad as unknown as boolean })).toThrow(/relaxed must be true or false/);
  }
  expect(backend()).toBe("scalar");
});

test("the relaxed build ships only apply kernels, each with fused multiply-adds", () => {
  const parts = Object.keys(wasmModules.relaxed);
  expect(parts.length).toBeGreaterThan(0);
  // The statistics, the constants and the backward's sums keep their exact rounding: never relaxed.
  for (const part of parts) expect(part, part).toMatch(/^f(32|64)-(normalize|backward-apply(-relu)?|group-apply(-last)?)$/);
  for (const [part, base64] of Object.entries(wasmModules.relaxed)) {
    const bytes = Uint8Array.from(atob(base64!), (c) => c.charCodeAt(0));
    // f32x4/f64x2 relaxed_madd and relaxed_nmadd: 0xfd, then 0x105-0x108 as LEB128.
    let fused = 0;
    for (let i = 0; i + 2 < bytes.length; i++) if (bytes[i] === 0xfd && bytes[i + 1] >= 0x85 && bytes[i + 1] <= 0x88 && bytes[i + 2] === 0x02) fused++;
    expect(fused, part).toBeGreaterThan(0);
    expect(WebAssembly.validate(bytes), part).toBe(relaxedHere);
  }
});

/** Channels-first (n, d, S) or rows (S = 1) in float64: train out and the gradients. */
function plain64(x: ArrayLike<number>, n: number, d: number, S: number, gamma: ArrayLike<number>, beta: ArrayLike<number>, dout: ArrayLike<number>) {
  const at = (i: number, j: number, s: number) => (i * d + j) * S + s;
  const N = n * S;
  const out = new Float64Array(x.length), dx = new Float64Array(x.length);
  const dgamma = new Float64Array(d), dbeta = new Float64Array(d), variance = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    let sum = 0;
    for (let i = 0; i < n; i++) for (let s = 0; s < S; s++) sum += x[at(i, j, s)];
    const mean = sum / N;
    let sq = 0;
    for (let i = 0; i < n; i++) for (let s = 0; s < S; s++) sq += (x[at(i, j, s)] - mean) ** 2;
    variance[j] = sq / N;
    const inv = 1 / Math.sqrt(variance[j] + EPS);
    let sd = 0, sdx = 0;
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < S; s++) {
        const k = at(i, j, s);
        out[k] = gamma[j] * (x[k] - mean) * inv + beta[j];
        sd += dout[k];
        sdx += dout[k] * (x[k] - mean) * inv;
      }
    }
    dbeta[j] = sd;
    dgamma[j] = sdx;
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < S; s++) {
        const k = at(i, j, s);
        dx[k] = ((gamma[j] * inv) / N) * (N * dout[k] - sd - (x[k] - mean) * inv * sdx);
      }
    }
  }
  return { out, dx, dgamma, dbeta, variance };
}

function run(shape: number[], x: FloatArray, gamma: FloatArray, beta: FloatArray, dout: FloatArray) {
  const rows = shape.length === 2;
  const bnParam: BNParam = { mode: "train", momentum: 0 };
  const train = rows ? batchnormForward(x, gamma, beta, bnParam, { shape }) : spatialBatchnormForward(x, gamma, beta, bnParam, shape);
  const test = rows ? batchnormForward(x, gamma, beta, { ...bnParam, mode: "test" }, { shape }) : spatialBatchnormForward(x, gamma, beta, { ...bnParam, mode: "test" }, shape);
  const compact = rows ? batchnormBackwardAlt(dout, train.cache!) : spatialBatchnormBackward(dout, train.cache!);
  const graph = rows ? batchnormBackward(dout, train.cache!) : spatialBatchnormBackward(dout, train.cache!);
  return { out: train.out, test: test.out, compact, graph };
}

// Narrow groups in strips (d = 3, 7), groups four at a time (d = 1024 in cache), streaming
// (8 MiB and more, rows of 8 KiB a quarter apart), an odd tail of rows, and channels-first planes.
const SHAPES: number[][] = [[64, 3], [1000, 7], [256, 1024], [2048, 1024], [1025, 2048], [37, 67], [8, 16, 28, 28], [3, 5, 7, 9]];

describe.each(["float32", "float64"] as Dtype[])("%s", (dtype) => {
  test.each(SHAPES.map((s) => [s.join(" × "), s] as const))("(%s): the relaxed and plain SIMD builds within the tolerances of float64 loops", (_, shape) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const d = shape[1];
    const n = shape[0];
    const S = size / (n * d);
    const x = typed(dtype, randn(size + 1, size, 3, 2));
    const gamma = typed(dtype, randn(size + 2, d, 1, 0.5));
    const beta = typed(dtype, randn(size + 3, d));
    const dout = typed(dtype, randn(size + 4, size));
    const want = plain64(x, n, d, S, gamma, beta, dout);
    const tol = tolerance(dtype);
    initSync();
    const relaxed = run(shape, x, gamma, beta, dout);
    initSync({ relaxed: false });
    const simd = run(shape, x, gamma, beta, dout);
    for (const [name, got] of [["relaxed", relaxed], ["simd", simd]] as const) {
      expectClose(got.out, want.out, tol.abs, `${name} out`);
      // momentum 0: the running statistics are the batch's (CS231n: the biased variance).
      expectClose(got.test, want.out, tol.abs * Math.max(1, maxAbs(want.out)), `${name} test out`);
      for (const form of ["compact", "graph"] as const) {
        expectRelClose(got[form].dx, want.dx, tol.rel * 4, `${name} ${form} dx`);
        expectRelClose(got[form].dgamma, want.dgamma, tol.rel, `${name} ${form} dgamma`);
        expectRelClose(got[form].dbeta, want.dbeta, tol.rel, `${name} ${form} dbeta`);
      }
    }
    // The statistics are not relaxed: the same bits in both builds.
    expectIdentical(relaxed.compact.dgamma, simd.compact.dgamma, "dgamma of both builds");
    expectIdentical(relaxed.compact.dbeta, simd.compact.dbeta, "dbeta of both builds");
  });
});

describe.each(["float32", "float64"] as Dtype[])("%s LayerNorm and GroupNorm", (dtype) => {
  const cases = [
    ["LayerNorm (64, 1024)", () => new LayerNorm(1024, { dtype }), [64, 1024]],
    ["LayerNorm (33, 13)", () => new LayerNorm(13, { dtype }), [33, 13]],
    ["GroupNorm NCHW (4, 32, 9, 9)", () => new GroupNorm(8, 32, { dtype }), [4, 32, 9, 9]],
    ["GroupNorm NHWC (4, 32, 9, 9)", () => new GroupNorm(8, 32, { dtype, layout: "NHWC" }), [4, 32, 9, 9]],
  ] as const;
  test.each(cases)("%s: the relaxed build's forward within the tolerances of the js backend's float64", (_, make, shape) => {
    const size = shape.reduce((a: number, b: number) => a * b, 1);
    const x = typed(dtype, randn(size, size, -2, 3));
    const forward = (options: Parameters<typeof initSync>[0]) => {
      initSync(options);
      const layer = make();
      layer.gamma!.set(randn(5, layer.gamma!.length, 1, 0.5));
      layer.beta!.set(randn(6, layer.beta!.length));
      return layer.forward(x as never, shape as never);
    };
    const want = forward({ backend: "js" });
    expectClose(forward({}), want, tolerance(dtype).abs, "relaxed out");
    expectClose(forward({ relaxed: false }), want, tolerance(dtype).abs, "simd out");
  });
});
