// Prints the results of bench/results/latest.json as Markdown tables: every table for
// docs/benchmarks.md, or with --summary the README's short one.
// node bench/markdown.mjs [--summary] [path/to/latest.json]
import { existsSync, readFileSync } from "node:fs";

const summary = process.argv.includes("--summary");
const file = process.argv.slice(2).find((a) => a !== "--summary");
const report = JSON.parse(readFileSync(file ?? new URL("./results/latest.json", import.meta.url), "utf8"));
const { machine, results } = report;
const impls = [...new Set(results.map((r) => r.implementation))];
const shapes = [...new Set(results.map((r) => r.shape))];
const fmt = (v) => (v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3));

if (summary) {
  // One cache-sized shape and two beyond the caches; each API's ns per element and its speed-up
  // over plain JavaScript.
  const columns = ["simd zero-copy", "simd layer, outputs", "simd layer", "simd functional", "tfjs-wasm", "plain JS"];
  const named = (row, c) => row.find((r) => r.implementation === c || (c === "tfjs-wasm" && r.implementation.startsWith("tfjs-wasm")));
  const threads = results.some((r) => r.threads);
  console.log(`Measured ${machine.date.slice(0, 10)} on ${machine.cpu} (${machine.cores} cores), Node ${machine.node}, one thread unless a column says 2, float32; medians, ns per element (× plain JS).\n`);
  const heads = threads ? [columns[0], "zero-copy, 2 threads (× 1 thread)", ...columns.slice(1)] : columns;
  console.log(`| shape | op | ${heads.join(" | ")} |`);
  console.log(`|---|---|${heads.map(() => "---:").join("|")}|`);
  for (const shape of ["256x1024", "8192x1024", "8x256x56x56 NCHW"]) {
    for (const op of ["train", "test", "backward"]) {
      const row = results.filter((r) => r.op === op && r.shape === shape);
      const plain = named(row, "plain JS");
      if (!plain) continue;
      const cells = columns.map((c) => {
        const r = named(row, c);
        if (!r) return "—";
        return c === "plain JS" ? fmt(r.nsPerElem) : `${fmt(r.nsPerElem)} (${(plain.nsPerElem / r.nsPerElem).toFixed(1)}×)`;
      });
      // The zero-copy path on 2 threads, timed alternately with 1 (its speed-up over 1 thread).
      const t = named(row, "simd zero-copy")?.threads;
      if (threads) cells.splice(1, 0, t ? `${fmt(t.nsPerElem2)} (${t.speedup.toFixed(2)}×)` : "—");
      console.log(`| ${shape} | ${op} | ${cells.join(" | ")} |`);
    }
  }
  process.exit(0);
}

console.log(`Measured ${machine.date.slice(0, 10)} on ${machine.cpu} (${machine.cores} cores), Node ${machine.node}, one thread, float32; medians, ns per element (lower is better).\n`);
for (const op of ["train", "test", "backward"]) {
  console.log(`**${op}**\n`);
  console.log(`| shape | SOL | adder floor | ${impls.join(" | ")} | zero-copy ×SOL | zero-copy vs plain JS |`);
  console.log(`|---|---:|---:|${impls.map(() => "---:").join("|")}|---:|---:|`);
  for (const shape of shapes) {
    const row = results.filter((r) => r.op === op && r.shape === shape);
    if (!row.length) continue;
    const ours = row.find((r) => r.implementation === "simd zero-copy");
    const plain = row.find((r) => r.implementation === "plain JS");
    const cells = impls.map((name) => {
      const r = row.find((q) => q.implementation === name);
      return r ? fmt(r.nsPerElem) : "—";
    });
    const floor = row[0].addFloorNsPerElem;
    console.log(`| ${shape} | ${fmt(row[0].solNsPerElem)} | ${floor ? fmt(floor) : "—"} | ${cells.join(" | ")} | ${ours ? ours.xSol.toFixed(2) + "×" : "—"} | ${ours && plain ? (plain.nsPerElem / ours.nsPerElem).toFixed(1) + "×" : "—"} |`);
  }
  console.log("");
}
// The threads column (1 and 2 threads timed alternately) and the two-thread bandwidth, when
// the run has them.
const threaded = results.filter((r) => r.threads);
if (threaded.length) {
  console.log("**threads** (zero-copy, 1 and 2 threads timed alternately in the same run; ns per element)\n");
  console.log("| op | shape | implementation | 1 thread | 2 threads | speed-up | 2 threads ×2T SOL |");
  console.log("|---|---|---|---:|---:|---:|---:|");
  for (const r of threaded) {
    const t = r.threads;
    const sol = t.split && t.xSol2 !== null ? `${t.xSol2.toFixed(2)}×` : "— (not split)";
    console.log(`| ${r.op} | ${r.shape} | ${r.implementation} | ${fmt(t.nsPerElem1)} | ${fmt(t.nsPerElem2)} | ${t.speedup.toFixed(2)}× | ${sol} |`);
  }
  console.log("");
}
if (report.bandwidth.some((b) => b.twoThreads)) {
  console.log("**bandwidth** (GB/s; one thread, and two: this thread and a worker on one shared memory)\n");
  console.log("| working set | read | read 2T | copy | copy 2T | triad | triad 2T |");
  console.log("|---:|---:|---:|---:|---:|---:|---:|");
  for (const b of [...report.bandwidth].sort((p, q) => p.workingSetBytes - q.workingSetBytes)) {
    const two = (loop) => (b.twoThreads ? b.twoThreads[loop].toFixed(1) : "—");
    console.log(`| ${(b.workingSetBytes / 2 ** 20).toFixed(2)} MiB | ${b.read.toFixed(1)} | ${two("read")} | ${b.copy.toFixed(1)} | ${two("copy")} | ${b.triad.toFixed(1)} | ${two("triad")} |`);
  }
  console.log("");
}
const f = report.fixedCost;
console.log(`Fixed cost of one call on a (1, 4) batch: zero-copy forward ${f.zeroCopyForwardMicroseconds.toFixed(2)} µs, backward ${f.zeroCopyBackwardMicroseconds.toFixed(2)} µs; functional forward ${f.functionalForwardMicroseconds.toFixed(2)} µs.`);

// The native comparison (npm run bench:native), when it has been run.
const nativeFile = new URL("./results/native.json", import.meta.url);
if (file === undefined && existsSync(nativeFile)) {
  const native = JSON.parse(readFileSync(nativeFile, "utf8"));
  const builds = Object.keys(native.results[0].native);
  console.log(`\nNative comparison, measured ${native.machine.date.slice(0, 10)} (gcc ${native.machine.gcc} -O3, Node ${native.machine.node}); ns per element (× SOL):\n`);
  console.log(`| shape | op | SOL | package (WASM SIMD) | ${builds.join(" | ")} |`);
  console.log(`|---|---|---:|---:|${builds.map(() => "---:").join("|")}|`);
  const cell = (ns, sol) => (ns === null ? "— (not on this CPU)" : `${fmt(ns)} (${(ns / sol).toFixed(2)}×)`);
  for (const r of native.results) {
    console.log(`| ${r.shape} | ${r.op} | ${fmt(r.solNsPerElem)} | ${cell(r.wasm, r.solNsPerElem)} | ${builds.map((b) => cell(r.native[b], r.solNsPerElem)).join(" | ")} |`);
  }
}
