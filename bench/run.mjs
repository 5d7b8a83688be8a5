// npm run bench [-- --quick] [-- --filter REGEX]
// Benchmarks batch normalization (forward train, forward test, backward in both forms) across
// shapes and implementations, next to the memory-bandwidth speed of light measured in the same
// run, then the TensorFlow.js layer against the stock one (bench/tfjs.mjs). Writes a table to
// the terminal, bench/results/latest.json, chart.svg and tfjs.json.
// Instantiation (WASM compile, tfjs backend set-up, workspaces) is outside every timing.
import Benchmark from "benchmark";
import * as tf from "@tensorflow/tfjs";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { BatchNorm, batchnormForward, initSync, threads } from "../dist/index.js";
import { engine } from "../dist/wasm.js";
import { createProbe } from "./bandwidth.mjs";
import { interleaved } from "./interleaved.mjs";
import { OPS } from "./ops.mjs";
import { chartSvg } from "./chart.mjs";
import { implementations } from "./implementations.mjs";
import { maxError, randomData } from "./data.mjs";

const HELP = `usage: npm run bench [-- --quick] [-- --filter REGEX] [-- --out DIR]
  --quick         fewer shapes and shorter timings
  --filter REGEX  only cases whose "op shape implementation" matches
  --out DIR       where latest.json and chart.svg go (default bench/results)`;

function parseArgs(argv) {
  const args = { quick: false, filter: null, out: "bench/results" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") args.quick = true;
    else if (a === "--filter" || a === "--out") {
      const value = argv[++i];
      if (value === undefined) throw new Error(`${a} needs a value`);
      args[a.slice(2)] = a === "--filter" ? new RegExp(value) : value;
    } else if (a === "--help" || a === "-h") {
      console.log(HELP);
      process.exit(0);
    } else throw new Error(`unknown option ${a}\n${HELP}`);
  }
  return args;
}

let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error(e.message);
  process.exit(2);
}

// [N, D] rows, or [N, C, H, W] in a layout (NCHW runs of H·W values; NHWC is the row kernel).
const SHAPES = (args.quick
  ? [[64, 256], [256, 1024], [16384, 3], [32, 64, 32, 32]]
  : [[64, 256], [256, 1024], [1024, 1024], [8192, 1024], [65536, 1], [16384, 3], [16384, 16], [1024, 1031],
     [1024, 4096], [32, 64, 32, 32], [8, 256, 56, 56], [32, 64, 32, 32, "NHWC"]]
).map((s) => {
  const layout = typeof s[s.length - 1] === "string" ? s.pop() : "NCHW";
  return { shape: s, layout, label: s.join("x") + (s.length > 2 ? ` ${layout}` : "") };
});
const TIMING = args.quick ? { minTime: 0.01, maxTime: 0.1, minSamples: 5 } : { minTime: 0.05, maxTime: 0.6, minSamples: 8 };

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

async function time(name, fn, oneCallSeconds = 0, isAsync = false) {
  // A call that takes most of a second (tfjs backward on the largest shapes) gets 3 samples.
  const timing = oneCallSeconds > 0.25 ? { minTime: 0, maxTime: 0, minSamples: 3 } : TIMING;
  const bench = isAsync
    ? new Benchmark(name, (deferred) => fn().then(() => deferred.resolve()), { ...timing, defer: true })
    : new Benchmark(name, fn, timing);
  await new Promise((resolve) => bench.on("complete", resolve).run({ async: isAsync }));
  if (bench.error) throw bench.error;
  return { medianSeconds: median(bench.stats.sample), rme: bench.stats.rme, hz: bench.hz, samples: bench.stats.sample.length };
}

const started = Date.now();
const machine = {
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.cpus().length,
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  node: process.version,
  v8: process.versions.v8,
  platform: `${os.platform()} ${os.arch()}`,
  date: new Date().toISOString(),
};
console.log(`batchnorm-wasm benchmarks${args.quick ? " (--quick)" : ""}: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}`);
console.log("float32; medians of benchmark.js samples; instantiation is excluded from every timing.\n");

// Bandwidth at each working-set size of the suite, on one thread and (twoThreads) split
// between this thread and a worker on one shared memory.
const probe = createProbe();
let probe2 = null;
try {
  probe2 = createProbe({ threads: 2 });
} catch (e) {
  console.log(`no two-thread bandwidth: ${e.message}\n`);
}
const bandwidthCache = new Map();
function bandwidthAt(bytes) {
  const seconds = args.quick ? 0.1 : 0.3;
  if (!bandwidthCache.has(bytes)) bandwidthCache.set(bytes, { ...probe.bandwidth(bytes, seconds), twoThreads: probe2?.bandwidth(bytes, seconds) ?? null });
  return bandwidthCache.get(bytes);
}

/**
 * The threads column of a zero-copy implementation: the same case on 2 threads, checked, and
 * timed alternately with `run` (its 1-thread form, still set up), as bench/threads.mjs does.
 * Null where 2 threads cannot run (the scalar backend, no worker_threads).
 */
async function threadsColumn(impl, op, data, run, expected, label) {
  const two = await impl.withThreads(2).setup(op, data);
  try {
    if (threads() < 2) return null;
    const pool = engine().pool;
    const forksBefore = pool.forks;
    const checkError = maxError(await two.result(), expected);
    if (!(checkError < 1e-3)) throw new Error(`${label} on 2 threads: result differs from the reference by ${checkError}`);
    // Whether the pool split the call (batches under its minBytes run on this thread alone).
    const split = pool.forks > forksBefore;
    const reps = Math.max(1, Math.round(2e7 / (data.x.length * 4)));
    const [ms1, ms2] = await interleaved([run, two.run], args.quick ? 9 : 21, reps);
    const ns = (ms) => (ms * 1e6) / data.x.length;
    return { threads: 2, split, minBytes: pool.minBytes, nsPerElem1: ns(ms1), nsPerElem2: ns(ms2), speedup: ms1 / ms2, checkError };
  } finally {
    two.teardown?.();
  }
}

// The adders' rate, once: an operation's adder floor is its vector additions at this rate.
const vectorAddNs = probe.vectorAddNanoseconds(args.quick ? 0.1 : 0.3);

const impls = await implementations({ quick: args.quick });
const results = [];
const rows = [];
for (const { shape: dims, layout, label: shape } of SHAPES) {
  const data = randomData(dims, layout, dims[0] * 131 + dims[1]);
  const elements = data.x.length;
  for (const [op, spec] of Object.entries(OPS)) {
    if (op === "backward-graph" && dims.length > 2) continue; // spatial backward has the compact form
    const workingSet = spec.arrays * elements * 4;
    const gbps = bandwidthAt(workingSet)[spec.loop];
    const sol = spec.bytes / gbps; // ns per element
    const addFloor = (spec.adds * vectorAddNs) / 4; // ns per element
    let plainNs = null;
    for (const impl of impls) {
      if (impl.kind === "peer" && op === "backward-graph") continue;
      if (impl.supports && !impl.supports(op, data)) continue;
      const label = `${op} ${shape} ${impl.name}`;
      if (args.filter && !args.filter.test(label)) continue;
      if (impl.prepare) await impl.prepare();
      const { run, result, teardown, expected } = await impl.setup(op, data);
      const checkStart = performance.now();
      const error = maxError(await result(), expected ?? data.expected[op]);
      const oneCall = (performance.now() - checkStart) / 1000;
      if (!(error < 1e-3)) throw new Error(`${label}: result differs from the reference by ${error}`);
      const t = await time(label, run, oneCall, impl.async);
      const threaded = impl.withThreads ? await threadsColumn(impl, op, data, run, expected ?? data.expected[op], label) : null;
      teardown?.();
      const nsPerElem = (t.medianSeconds * 1e9) / elements;
      if (impl.kind === "baseline") plainNs = nsPerElem;
      const r = {
        op, shape, dims, layout, implementation: impl.name, kind: impl.kind, nsPerElem, rme: t.rme, samples: t.samples,
        gbPerS: spec.bytes / nsPerElem, solNsPerElem: sol, xSol: nsPerElem / sol, bandwidthGBs: gbps, loop: spec.loop,
        addFloorNsPerElem: addFloor, xAddFloor: nsPerElem / addFloor,
        checkError: error,
      };
      if (impl.withThreads) {
        // Against the two-thread speed of light: the same bytes at the two-thread bandwidth.
        const gbps2 = bandwidthAt(workingSet).twoThreads?.[spec.loop];
        r.threads = threaded && { ...threaded, sol2NsPerElem: gbps2 ? spec.bytes / gbps2 : null, xSol2: gbps2 ? threaded.nsPerElem2 / (spec.bytes / gbps2) : null };
      }
      results.push(r);
      rows.push(r);
    }
    for (const r of rows.splice(0)) {
      r.speedupVsPlainJs = plainNs ? plainNs / r.nsPerElem : null;
      console.log(
        `${r.op.padEnd(15)} ${r.shape.padEnd(17)} ${r.implementation.padEnd(26)} ${r.nsPerElem.toFixed(3).padStart(9)} ns/elem ±${r.rme.toFixed(1).padStart(4)}%  ` +
          `${r.gbPerS.toFixed(1).padStart(6)} GB/s  ${r.xSol.toFixed(2).padStart(6)}× SOL  ${r.xAddFloor.toFixed(2).padStart(6)}× adder floor  ` +
          `${r.speedupVsPlainJs ? (r.speedupVsPlainJs.toFixed(1) + "× plain JS").padStart(16) : ""}` +
          (r.threads === undefined ? "" : `  ${threadsCell(r.threads)}`),
      );
    }
  }
}

/** The threads column as printed: 1 and 2 threads timed alternately, and their ratio. */
function threadsCell(t) {
  if (t === null) return "threads: 1 only";
  const sol = t.xSol2 === null ? "" : `, ${t.xSol2.toFixed(2)}× 2T SOL`;
  return `1T ${t.nsPerElem1.toFixed(3)} / 2T ${t.nsPerElem2.toFixed(3)} ns/elem: ×${t.speedup.toFixed(2)}${t.split ? sol : " (not split: under the threshold)"}`;
}

// Fixed cost of one call: a (1, 4) batch, where the data is nothing.
initSync({ backend: "simd" });
const tiny = new BatchNorm(4);
const ws = tiny.workspace(1);
ws.x.set([1, 2, 3, 4]);
const x4 = new Float32Array([1, 2, 3, 4]);
const ones = new Float32Array(4).fill(1);
const zeros4 = new Float32Array(4);
const fixedCost = {
  zeroCopyForwardMicroseconds: (await time("fixed cost zero-copy", () => ws.forward())).medianSeconds * 1e6,
  zeroCopyBackwardMicroseconds: (await time("fixed cost zero-copy backward", () => ws.backward())).medianSeconds * 1e6,
  functionalForwardMicroseconds: (await time("fixed cost functional", () => batchnormForward(x4, ones, zeros4, { mode: "train" }))).medianSeconds * 1e6,
};
ws.dispose();
console.log(
  `\nfixed cost of one call, (1, 4): zero-copy forward ${fixedCost.zeroCopyForwardMicroseconds.toFixed(3)} µs, ` +
    `backward ${fixedCost.zeroCopyBackwardMicroseconds.toFixed(3)} µs, functional forward ${fixedCost.functionalForwardMicroseconds.toFixed(3)} µs`,
);

const bandwidth = [...bandwidthCache.entries()].map(([bytes, bw]) => ({ workingSetBytes: bytes, ...bw }));
console.log(`\nbandwidth (GB/s) by working set, one thread${probe2 ? " (and two: this thread and a worker, on shared memory)" : ""}:`);
for (const b of bandwidth) {
  const two = (loop) => (b.twoThreads ? ` (2T ${b.twoThreads[loop].toFixed(1)})` : "");
  console.log(`  ${(b.workingSetBytes / 2 ** 20).toFixed(2).padStart(8)} MiB  read ${b.read.toFixed(1)}${two("read")}  copy ${b.copy.toFixed(1)}${two("copy")}  triad ${b.triad.toFixed(1)}${two("triad")}`);
}

console.log(`adders: ${vectorAddNs.toFixed(4)} ns per f32x4 addition, independent ones back to back`);

mkdirSync(args.out, { recursive: true });
const report = { machine, quick: args.quick, tfjs: tf.version.tfjs, ops: OPS, bandwidth, vectorAddNanoseconds: vectorAddNs, fixedCost, results };
writeFileSync(`${args.out}/latest.json`, JSON.stringify(report, null, 1) + "\n");
const caption = `${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, one thread, float32, ${machine.date.slice(0, 10)}${args.quick ? " (--quick)" : ""}`;
writeFileSync(
  `${args.out}/chart.svg`,
  chartSvg({
    results: results.filter((r) => r.op !== "backward-graph"),
    ops: ["train", "test", "backward"],
    shapes: SHAPES.map((s) => s.label).filter((s) => results.some((r) => r.shape === s)),
    implementations: impls.map((i) => i.name).filter((name) => results.some((r) => r.implementation === name)),
    caption,
  }),
);
console.log(`\nwrote ${args.out}/latest.json and ${args.out}/chart.svg in ${((Date.now() - started) / 1000).toFixed(0)} s`);

// The TensorFlow.js layer's training step against the stock layer (bench/tfjs.mjs), in the same
// run unless a filter narrows the suite to some cases.
if (!args.filter) {
  console.log("\nbatchnorm-wasm/tfjs against tf.layers.batchNormalization:");
  const tfjsArgs = ["bench/tfjs.mjs", "--json", `${args.out}/tfjs.json`, ...(args.quick ? ["--quick"] : [])];
  execFileSync(process.execPath, tfjsArgs, { stdio: "inherit" });
}
