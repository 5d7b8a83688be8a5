// Builds the WebAssembly modules and embeds them in src/generated/binaries.ts, so that no
// user ever has to tell a bundler where a .wasm is: the bytes travel inside the JavaScript, in
// the ESM and the CJS build alike.
//
// assembly/ compiles twice (SIMD and scalar, see asconfig.json). Each build is then split by
// its exports into small modules, one per element type and part of the kernel registry
// (src/kernels.ts), each under 4 KiB: browsers may refuse to compile a larger module synchronously on
// the main thread, which initSync() does. The modules import one shared memory.
import asc from "assemblyscript/asc";
import binaryen from "binaryen";
import ts from "typescript";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";

// The parts come from the kernel registry (src/kernels.ts): "f32-moments" holds the F32
// export of every kernel whose part is "moments". TypeScript strips its types; it has no
// imports to resolve.
const registrySource = ts.transpileModule(readFileSync("src/kernels.ts", "utf8"), {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
}).outputText;
const { KERNELS, EVERY_PART, SUFFIX } = await import(`data:text/javascript;base64,${Buffer.from(registrySource).toString("base64")}`);
export const PARTS = {};
for (const dtype of ["float32", "float64"]) {
  for (const [name, { part, untyped }] of Object.entries(KERNELS)) {
    if (untyped) (PARTS[part] ??= []).includes(name) || PARTS[part].push(name);
    else (PARTS[`${SUFFIX[dtype].toLowerCase()}-${part}`] ??= []).push(name + SUFFIX[dtype]);
  }
}
// "threads": the SIMD build on an imported shared memory (src/threads.ts), for worker pools.
// "relaxed": the SIMD build with relaxed SIMD (fused multiply-add, assembly/columns.ts madd),
// shipped only for the parts in RELAXED_PARTS whose bytes differ from the SIMD build's.
const TARGETS = ["simd", "scalar", "threads", "relaxed"];
// The parts where the relaxed build won on Node 22, on narrow groups (docs/tuning.md, "Relaxed
// SIMD"); group-apply(-last) and backward-apply-relu measured even: built, not shipped.
const RELAXED_PARTS = ["f32-normalize", "f64-normalize", "f32-backward-apply", "f64-backward-apply"];
const SIZE_LIMIT = 4096;

async function compile(args) {
  const { error, stderr } = await asc.main(args);
  if (error) {
    console.error(stderr.toString());
    process.exit(1);
  }
}

mkdirSync("build", { recursive: true });
// Modules of an earlier split would otherwise stay beside the new ones.
for (const file of readdirSync("build")) if (/^batchnorm\..*\.wasm$/.test(file)) rmSync(`build/${file}`);
for (const target of TARGETS) await compile(["--config", "asconfig.json", "--target", target]);
// The benchmarks' bandwidth probe: built here, never shipped.
await compile([
  "bench/assembly/bandwidth.ts", "--outFile", "build/bandwidth.wasm", "--runtime", "stub",
  "--optimizeLevel", "3", "--noAssert", "--enable", "simd",
]);
// The same probe on an imported shared memory (at most 1 GiB), for its two-thread runs.
await compile([
  "bench/assembly/bandwidth.ts", "--outFile", "build/bandwidth.threads.wasm", "--runtime", "stub",
  "--optimizeLevel", "3", "--noAssert", "--enable", "simd,threads", "--sharedMemory", "--maximumMemory", "16384",
]);
// The separate ReLU pass the fused one is measured against (bench/relu.mjs): never shipped.
await compile([
  "bench/assembly/relu.ts", "--outFile", "build/relu-pass.wasm", "--runtime", "stub",
  "--optimizeLevel", "3", "--noAssert", "--enable", "simd",
]);

/** The module with only `keep` (and the helpers every part has) exported, dead code removed. */
function split(bytes, keep, target) {
  const simd = target !== "scalar";
  const relaxed = target === "relaxed";
  // The features AssemblyScript compiled with: no others, or binaryen may use newer encodings.
  const F = binaryen.Features;
  const features = F.MVP | F.SignExt | F.MutableGlobals | F.NontrappingFPToInt | F.BulkMemory | F.BulkMemoryOpt | (simd ? F.SIMD128 : 0) | (target === "threads" ? F.Atomics : 0) | (relaxed ? F.RelaxedSIMD : 0);
  const module = binaryen.readBinaryWithFeatures(bytes, features);
  const exports = [];
  for (let i = 0; i < module.getNumExports(); i++) exports.push(binaryen.getExportInfo(module.getExportByIndex(i)).name);
  const listed = [...EVERY_PART, ...Object.values(PARTS).flat()];
  const unlisted = exports.filter((name) => name !== "memory" && !listed.includes(name));
  if (unlisted.length) throw new Error(`assembly/index.ts exports ${unlisted.join(", ")}, not in the registry (src/kernels.ts)`);
  const missing = keep.filter((name) => !exports.includes(name));
  if (missing.length) throw new Error(`the registry (src/kernels.ts) lists ${missing.join(", ")}, which assembly/index.ts does not export`);
  for (const name of exports) if (!keep.includes(name) && !EVERY_PART.includes(name)) module.removeExport(name);
  binaryen.setOptimizeLevel(3);
  binaryen.setShrinkLevel(1);
  module.optimize();
  if (!module.validate()) throw new Error(`split module ${keep} does not validate`);
  const out = module.emitBinary();
  module.dispose();
  return Buffer.from(out);
}

const lines = [
  "// Generated by scripts/build-wasm.mjs from assembly/. Do not edit.",
  "export type WasmPart = " + Object.keys(PARTS).map((p) => JSON.stringify(p)).join(" | ") + ";",
  "/** base64 of each module, by build and part. */",
  "export const wasmModules: Record<\"simd\" | \"scalar\" | \"threads\", Record<WasmPart, string>> & { relaxed: Partial<Record<WasmPart, string>> } = {",
];
for (const target of TARGETS) {
  const full = readFileSync(`build/batchnorm.${target}.wasm`);
  lines.push(`  ${target}: {`);
  for (const [part, keep] of Object.entries(PARTS)) {
    const bytes = split(full, keep, target);
    // A relaxed part the SIMD build's bytes serve (not listed, or no relaxed instruction): not shipped twice.
    if (target === "relaxed" && (!RELAXED_PARTS.includes(part) || bytes.equals(readFileSync(`build/batchnorm.simd.${part}.wasm`)))) continue;
    if (bytes.length >= SIZE_LIMIT) throw new Error(`${target} ${part}: ${bytes.length} bytes, over the ${SIZE_LIMIT}-byte limit`);
    const file = `build/batchnorm.${target}.${part}.wasm`;
    writeFileSync(file, bytes);
    const hash = createHash("sha256").update(bytes).digest("hex").slice(0, 16);
    lines.push(`    /** ${bytes.length} bytes, sha256 ${hash}… */`);
    lines.push(`    ${JSON.stringify(part)}: ${JSON.stringify(bytes.toString("base64"))},`);
    console.log(`${file}: ${bytes.length} bytes, sha256 ${hash}`);
  }
  lines.push("  },");
}
lines.push("};");
mkdirSync("src/generated", { recursive: true });
writeFileSync("src/generated/binaries.ts", lines.join("\n") + "\n");

// The loop thresholds of assembly/tuning.ts, for the tests that derive a shape for each loop.
const tuning = ["// Generated by scripts/build-wasm.mjs from assembly/tuning.ts. Do not edit."];
for (const [, name, value] of readFileSync("assembly/tuning.ts", "utf8").matchAll(/^export const (\w+): \w+ = ([\d <]+);/gm)) {
  const [a, b] = value.split("<<").map(Number);
  tuning.push(`export const ${name} = ${b === undefined ? a : a * 2 ** b};`);
}
writeFileSync("src/generated/tuning.ts", tuning.join("\n") + "\n");
