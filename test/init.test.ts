// Backend selection: the best the JavaScript engine supports, detected with
// WebAssembly.validate on the shipped modules; a forced backend; what is active.
import { afterEach, expect, test, vi } from "vitest";
import { backend, batchnormForward, init, initSync, simdBuild, supportedBackends } from "../src/index.js";
import { wasmModules } from "../src/generated/binaries.js";

afterEach(() => {
  vi.restoreAllMocks();
  initSync({ backend: "simd" });
});

const x = new Float32Array([1, 2, 3, 4, 5, 6]);
const gamma = new Float32Array([1, 1]);
const beta = new Float32Array([0, 0]);
// Each column is (1, 3, 5) + 0 or 1: mean ± 2, biased variance 8/3.
const expected = [-1, -1, 0, 0, 1, 1].map((v) => (2 * v) / Math.sqrt(8 / 3 + 1e-5));

test("the SIMD build where WebAssembly SIMD validates", async () => {
  expect(supportedBackends()).toEqual(["simd", "scalar", "js"]);
  expect(await init()).toBe("simd");
  expect(backend()).toBe("simd");
});

test("without WebAssembly SIMD the scalar build runs", () => {
  const validate = WebAssembly.validate.bind(WebAssembly);
  let calls = 0;
  // supportedBackends validates the SIMD module first: let only that one fail.
  vi.spyOn(WebAssembly, "validate").mockImplementation((bytes) => (calls++ === 0 ? false : validate(bytes)));
  expect(initSync()).toBe("scalar");
  expect(backend()).toBe("scalar");
  const { out } = batchnormForward(x, gamma, beta, { mode: "train" });
  Array.from(out).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 5));
});

test("without WebAssembly at all the plain-JS backend runs", () => {
  vi.spyOn(WebAssembly, "validate").mockReturnValue(false);
  expect(supportedBackends()).toEqual(["js"]);
  expect(initSync()).toBe("js");
  expect(() => initSync({ backend: "simd" })).toThrow(/backend 'simd' is not supported by this JavaScript engine \(supported: js\)/);
  const { out } = batchnormForward(x, gamma, beta, { mode: "train" });
  Array.from(out).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 5));
});

test("every shipped module is under 4 KiB, so browsers compile it synchronously on the main thread", () => {
  initSync();
  const relaxed = simdBuild() === "relaxed";
  for (const [build, parts] of Object.entries(wasmModules)) {
    for (const [part, base64] of Object.entries(parts)) {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      expect(bytes.length, `${build} ${part}`).toBeLessThan(4096);
      // The relaxed build's modules compile exactly where the engine has relaxed SIMD.
      if (build === "relaxed" && !relaxed) expect(WebAssembly.validate(bytes), `${build} ${part}`).toBe(false);
      else expect(new WebAssembly.Module(bytes), `${build} ${part}`).toBeInstanceOf(WebAssembly.Module);
    }
  }
  // Two element types times 19 parts (seven batch norm, two group norm and three channels-last
  // group norm, the fused ReLU's six, the thread pools' backward-map), and the untyped checksum.
  expect(Object.keys(wasmModules.simd)).toHaveLength(39);
  expect(Object.keys(wasmModules).sort()).toEqual(["relaxed", "scalar", "simd", "threads"]);
});
