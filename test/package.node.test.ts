// The packed tarball, installed like a user would, from ESM and CJS, and in a JavaScript
// engine without WebAssembly (node --jitless).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { beforeAll, describe, expect, test } from "vitest";
import { tsBlocks } from "./support/markdown.js";
import { packAndInstall } from "./support/pack.js";

let dir = "";
let files: string[] = [];
let installOutput = "";

// Each column is (1, 3, 5) + 0 or 1: x̂ = ±2 / sqrt(8/3 + eps), out = 2·x̂ + 0.5.
const expected = [-1, -1, 0, 0, 1, 1].map((v) => (4 * v) / Math.sqrt(8 / 3 + 1e-5) + 0.5);
const program = (load: string) => `${load}
const x = new Float32Array([1, 2, 3, 4, 5, 6]);
const { out, cache } = m.batchnormForward(x, new Float32Array([2, 2]), new Float32Array([0.5, 0.5]), { mode: "train" });
const { dbeta } = m.batchnormBackward(new Float32Array(6).fill(1), cache);
console.log(JSON.stringify({ backend: m.backend(), out: Array.from(out), dbeta: Array.from(dbeta) }));`;

/** Runs node with `args` in the app; nothing may go to stderr (no warnings). */
function run(args: string[]) {
  const child = spawnSync(process.execPath, args, { cwd: dir, encoding: "utf8" });
  expect(child.stderr).toBe("");
  expect(child.status).toBe(0);
  const result = JSON.parse(child.stdout);
  result.out.forEach((v: number, i: number) => expect(v).toBeCloseTo(expected[i], 5));
  expect(result.dbeta).toEqual([3, 3]);
  return result.backend;
}

beforeAll(() => {
  ({ dir, files, installOutput } = packAndInstall("bn-pack-"));
}, 120_000);

describe("npm pack", () => {
  test("holds only what a user needs: the ESM and CJS builds with their types, README, LICENSE, CHANGELOG, package.json", () => {
    expect(files).toContain("package.json");
    expect(files).toContain("README.md");
    expect(files).toContain("LICENSE");
    expect(files).toContain("CHANGELOG.md");
    expect(files).toContain("dist/index.js");
    expect(files).toContain("dist/index.d.ts");
    expect(files).toContain("dist/cjs/index.js");
    expect(files).toContain("dist/cjs/index.d.ts");
    expect(files).toContain("dist/cjs/package.json");
    for (const f of ["dist/tfjs.js", "dist/tfjs.d.ts", "dist/cjs/tfjs.js", "dist/cjs/tfjs.d.ts"]) expect(files).toContain(f);
    const stray = files.filter((f) => !/^(dist\/.+\.(js|d\.ts|json)|README\.md|LICENSE|CHANGELOG\.md|package\.json)$/.test(f));
    expect(stray).toEqual([]);
  });

  test("package.json: exports for import and require with types, side effects only in the tfjs entry", () => {
    const pkg = JSON.parse(readFileSync(join(dir, "node_modules/batchnorm-wasm/package.json"), "utf8"));
    // Only the tfjs entry has one: it registers its layer class with tfjs when loaded.
    expect(pkg.sideEffects).toEqual(["./dist/tfjs.js", "./dist/cjs/tfjs.js"]);
    expect(pkg.exports["."].import).toEqual({ types: "./dist/index.d.ts", default: "./dist/index.js" });
    expect(pkg.exports["."].require).toEqual({ types: "./dist/cjs/index.d.ts", default: "./dist/cjs/index.js" });
  });

  test("the MIT license names its holder; package.json has the metadata a registry page shows", () => {
    expect(readFileSync(join(dir, "node_modules/batchnorm-wasm/LICENSE"), "utf8")).toMatch(/^MIT License\n\nCopyright \(c\) 2026 the batchnorm-wasm authors\n/);
    const pkg = JSON.parse(readFileSync(join(dir, "node_modules/batchnorm-wasm/package.json"), "utf8"));
    expect(pkg.license).toBe("MIT");
    expect(pkg.repository.url).toMatch(/^git\+https:\/\/.+\.git$/);
    expect(pkg.homepage).toMatch(/^https:\/\//);
    expect(pkg.bugs.url).toMatch(/^https:\/\//);
    expect(pkg.keywords).toEqual(expect.arrayContaining(["batch-normalization", "webassembly", "simd"]));
  });

  test("installing the tarball prints no warning about this package (no install-time scripts shipped)", () => {
    // npm ≥ 11 lists dependencies whose preinstall/install/postinstall (and, for file and git
    // sources, prepare) scripts it did not run; a shipped "prepare" put this package there.
    const warnings = installOutput.split("\n").filter((line) => /warn/i.test(line) && /batchnorm-wasm/.test(line));
    expect(warnings).toEqual([]);
    const { scripts = {} } = JSON.parse(readFileSync(join(dir, "node_modules/batchnorm-wasm/package.json"), "utf8"));
    for (const hook of ["preinstall", "install", "postinstall", "prepare"]) expect(scripts).not.toHaveProperty(hook);
  });

  test("TensorFlow.js, an optional peer, is not installed with the package", () => {
    expect(existsSync(join(dir, "node_modules/batchnorm-wasm/dist/tfjs.js"))).toBe(true);
    expect(existsSync(join(dir, "node_modules/@tensorflow"))).toBe(false);
  });

  test("import from ESM", () => {
    expect(run(["--input-type=module", "-e", program(`import * as m from "batchnorm-wasm";`)])).toBe("simd");
  });

  test("require from CJS", () => {
    expect(run(["-e", program(`const m = require("batchnorm-wasm");`)])).toBe("simd");
  });

  test("without WebAssembly (node --jitless) the plain-JS backend runs", () => {
    // --jitless implies --no-expose-wasm; up to Node 22 V8 warns "disabling flag --expose_wasm
    // due to conflicting flags" unless it is stated too, and Node 24 no longer takes it (run()
    // asserts an empty stderr).
    const flags = Number(process.versions.node.split(".")[0]) >= 24 ? ["--jitless"] : ["--jitless", "--no-expose-wasm"];
    expect(run([...flags, "--input-type=module", "-e", program(`import * as m from "batchnorm-wasm";`)])).toBe("js");
  });

  test("the README's first example, copied into the app as written, compiles under tsc --strict and runs", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const first = tsBlocks(readme, "README.md")[0];
    expect(first.code).toMatch(/from "batchnorm-wasm"/);
    // What the example computed, for the check below: out is (N, D), each column normalized.
    const source = `${first.code}\nconsole.log("RESULT " + JSON.stringify({ N, D, out: Array.from(out) }));\n`;
    writeFileSync(join(dir, "first-example.mts"), source);
    // The user's compiler settings for an ES module app in Node; the package's types come
    // from the installed tarball (its exports map), not from this repository.
    const program = ts.createProgram([join(dir, "first-example.mts")], {
      strict: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
      types: [],
      outDir: dir,
    });
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    expect(diagnostics).toEqual([]);
    expect(program.emit().emitSkipped).toBe(false);
    const child = spawnSync(process.execPath, ["first-example.mjs"], { cwd: dir, encoding: "utf8" });
    expect(child.stderr).toBe("");
    expect(child.status).toBe(0);
    const line = child.stdout.split("\n").find((l) => l.startsWith("RESULT "));
    const { N, D, out } = JSON.parse(line!.slice("RESULT ".length)) as { N: number; D: number; out: number[] };
    expect(out).toHaveLength(N * D);
    for (let j = 0; j < D; j++) {
      const column = Array.from({ length: N }, (_, i) => out[i * D + j]);
      const mean = column.reduce((a, v) => a + v, 0) / N;
      const variance = column.reduce((a, v) => a + (v - mean) ** 2, 0) / N;
      expect(Math.abs(mean)).toBeLessThan(1e-6);
      expect(variance).toBeCloseTo(1, 3);
    }
  });
});
