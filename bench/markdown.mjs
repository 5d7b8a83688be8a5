// Prints the results of bench/results/latest.json as Markdown tables for the README:
// node bench/markdown.mjs [path/to/latest.json]
import { existsSync, readFileSync } from "node:fs";

const report = JSON.parse(readFileSync(process.argv[2] ?? new URL("./results/latest.json", import.meta.url), "utf8"));
const { machine, results } = report;
const impls = [...new Set(results.map((r) => r.implementation))];
const shapes = [...new Set(results.map((r) => r.shape))];
const fmt = (v) => (v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3));

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
const f = report.fixedCost;
console.log(`Fixed cost of one call on a (1, 4) batch: zero-copy forward ${f.zeroCopyForwardMicroseconds.toFixed(2)} µs, backward ${f.zeroCopyBackwardMicroseconds.toFixed(2)} µs; functional forward ${f.functionalForwardMicroseconds.toFixed(2)} µs.`);

// The native comparison (npm run bench:native), when it has been run.
const nativeFile = new URL("./results/native.json", import.meta.url);
if (process.argv[2] === undefined && existsSync(nativeFile)) {
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
