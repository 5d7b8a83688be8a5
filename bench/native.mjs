// npm run bench:native [-- --shape NxD ...] [-- --out DIR]
// The package's float32 kernels (simd backend, zero-copy) next to the same algorithms compiled
// natively with gcc (bench/native/kernels.c): 128-bit vectors without fused multiply-add, the
// instructions WebAssembly SIMD has; 256-bit AVX2; AVX2 with FMA. All timed in this run with
// the same method (medians of 15 timings of ~2·10⁷ elements), next to the speed of light of
// bench/ops.mjs. Each result is checked against float64 batch norm once before timing.
// Needs gcc; writes DIR/native.json (default bench/results).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { BatchNorm, initSync, reference } from "../dist/index.js";
import { createProbe } from "./bandwidth.mjs";
import { OPS } from "./ops.mjs";

const args = { shapes: [], out: "bench/results" };
for (let i = 2; i < process.argv.length; i++) {
  const [flag, value] = [process.argv[i], process.argv[++i]];
  const shape = (value ?? "").split("x").map(Number);
  if (flag === "--shape" && /^\d+x\d+$/.test(value) && shape[0] > 0 && shape[1] > 0 && shape[1] % 16 === 0) args.shapes.push(shape);
  else if (flag === "--out" && value) args.out = value;
  else {
    console.error("usage: node bench/native.mjs [--shape NxD ...] [--out DIR] (D a multiple of 16)");
    process.exit(2);
  }
}
const SHAPES = args.shapes.length ? args.shapes : [[64, 256], [256, 1024], [1024, 1024], [8192, 1024]];
// Each build needs its CPU flags (x86-64 Linux); a CPU without them gets "—" for that build.
const cpuFlags = existsSync("/proc/cpuinfo") ? new Set(readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1].split(/\s+/)) : new Set();
const NATIVE = [
  { name: "gcc 128-bit", flags: ["-DW=4", "-mavx", "-ffp-contract=off"], needs: ["avx"] },
  { name: "gcc AVX2", flags: ["-DW=8", "-mavx2", "-ffp-contract=off"], needs: ["avx2"] },
  { name: "gcc AVX2+FMA", flags: ["-DW=8", "-mavx2", "-mfma", "-ffp-contract=fast"], needs: ["avx2", "fma"] },
].map((build) => ({ ...build, runs: build.needs.every((flag) => cpuFlags.has(flag)) }));
const TIMINGS = 15;

function medianNsPerElem(run, elements) {
  const reps = Math.max(1, Math.floor(2e7 / elements));
  for (let i = 0; i < reps; i++) run();
  const times = [];
  for (let k = 0; k < TIMINGS; k++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) run();
    times.push(Number(process.hrtime.bigint() - t0) / reps / elements);
  }
  return times.sort((a, b) => a - b)[TIMINGS >> 1];
}

/** Largest |got − want| / max(1, |want|). */
function maxError(got, want) {
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
  return err;
}

/** The package's zero-copy train forward and compact backward on (n, d) data like the native program's. */
function packageTimes(n, d) {
  initSync({ backend: "simd" });
  const ws = new BatchNorm(d).workspace([n, d]);
  const [xView, doutView] = [ws.x, ws.dout]; // views stay valid: nothing is allocated until the timing
  for (let i = 0; i < n * d; i++) {
    xView[i] = 3 * Math.random() + 1;
    doutView[i] = Math.random();
  }
  // Checked once against the package's float64-accumulating plain-JS reference.
  const f64 = (length) => new Float64Array(length);
  const x = Float64Array.from(xView), dout = Float64Array.from(doutView), ones = f64(d).fill(1);
  const [out, mean, meanLo, variance, invStd, dx] = [f64(n * d), f64(d), f64(d), f64(d), f64(d), f64(n * d)];
  reference.forwardTrain(x, n, d, 1, ones, f64(d), 1e-5, 0.9, 1, null, null, out, mean, meanLo, variance, invStd);
  reference.backward(1, dout, x, n, d, 1, ones, mean, meanLo, invStd, dx, null, null);
  const error = Math.max(maxError(ws.forward(), out), maxError(ws.backward(), dx));
  if (!(error < 1e-3)) throw new Error(`package result at ${n}x${d} differs from the reference by ${error}`);
  const times = { train: medianNsPerElem(() => ws.forward(), n * d), backward: medianNsPerElem(() => ws.backward(), n * d) };
  ws.dispose();
  return times;
}

mkdirSync("build/native", { recursive: true });
for (const { name, flags } of NATIVE) {
  const file = `build/native/${name.replace(/\W+/g, "-")}`;
  try {
    execFileSync("gcc", ["-O3", ...flags, "-o", file, "bench/native/kernels.c", "-lm"], { stdio: "pipe" });
  } catch (e) {
    console.error(`gcc failed for ${name}: ${e.stderr?.toString() || e.message}`);
    process.exit(1);
  }
}

const probe = createProbe();
const results = [];
console.log(`${os.cpus()[0]?.model ?? "unknown CPU"}, Node ${process.version}; ns per element, × speed of light\n`);
console.log("shape      op        SOL    package WASM  " + NATIVE.map((v) => v.name.padStart(16)).join(""));
for (const [n, d] of SHAPES) {
  const wasm = packageTimes(n, d);
  const native = NATIVE.map(({ name, runs }) => {
    if (!runs) return { name, train: null, backward: null };
    // Exits non-zero (and execFileSync throws) if its result differs from float64 batch norm.
    const out = execFileSync(`build/native/${name.replace(/\W+/g, "-")}`, [String(n), String(d)]).toString();
    const [, train, backward] = out.match(/train ([\d.]+) backward ([\d.]+)/).map(Number);
    return { name, train, backward };
  });
  for (const op of ["train", "backward"]) {
    const spec = OPS[op];
    const sol = spec.bytes / probe.bandwidth(spec.arrays * n * d * 4)[spec.loop];
    const row = { shape: `${n}x${d}`, op, solNsPerElem: sol, wasm: wasm[op], native: Object.fromEntries(native.map((v) => [v.name, v[op]])) };
    results.push(row);
    const cell = (ns) => (ns === null ? "—" : `${ns.toFixed(3)} (${(ns / sol).toFixed(2)}×)`).padStart(16);
    console.log(`${row.shape.padEnd(10)} ${op.padEnd(9)} ${sol.toFixed(3)} ${cell(row.wasm)}${native.map((v) => cell(v[op])).join("")}`);
  }
}
mkdirSync(args.out, { recursive: true });
const machine = { cpu: os.cpus()[0]?.model, node: process.version, gcc: execFileSync("gcc", ["-dumpfullversion"]).toString().trim(), date: new Date().toISOString() };
writeFileSync(`${args.out}/native.json`, JSON.stringify({ machine, results }, null, 2) + "\n");
console.log(`\nwrote ${args.out}/native.json`);
