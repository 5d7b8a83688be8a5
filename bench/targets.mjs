// The targets of issue #16 ("fast on every path"), checked in separate runs of one process
// each (default five), in the default environment (no malloc settings):
// - outputs given: the functional API and the layer >= 10x plain JS (outputs preallocated) on
//   train and backward, >= 4x on test, at each shape of ROWS and SPATIAL; within 1.5x of the
//   zero-copy path;
// - fresh results (the calls as before): >= 3x plain JS on train and backward in the median
//   over runs, and never below 2x in any run;
// - narrow shapes: the zero-copy train and backward within 1.5x of the ns per element of
//   (8192, 1024).
// Each run times every implementation of one shape and op interleaved, REPS timings, medians.
// A target holds when it holds in every run (the worst run is printed).
//
//   npm run bench:targets [-- --runs 5] [-- --quick] [-- --json file]
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import os from "node:os";

const args = process.argv.slice(2);
const value = (flag, fallback) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : fallback);
const quick = args.includes("--quick");
const RUNS = Number(value("--runs", quick ? 2 : 5));
const REPS = quick ? 5 : 9;

const ROWS = [[64, 256], [256, 1024], [1024, 1024], [8192, 1024], [1024, 4096]];
const SPATIAL = [[8, 256, 56, 56]];
const NARROW = [[65536, 1], [16384, 3], [1 << 20, 64]];
const PATHS = ["simd functional, outputs", "simd layer, outputs", "simd functional", "simd layer"];
const OPS = ["train", "test", "backward"];

if (args.includes("--child")) await child();
else parent();

/** One run: ns per element of every implementation, shape and op, as JSON on stdout. */
async function child() {
  const { implementations } = await import("./implementations.mjs");
  const { randomData, maxError } = await import("./data.mjs");
  const { interleaved } = await import("./interleaved.mjs");
  const all = await implementations({ quick: true });
  const pick = (name) => all.find((i) => i.name === name);
  const results = [];
  const shapes = [...ROWS, ...SPATIAL, ...NARROW];
  // --quick: the shapes up to 2^20 values, and (8192, 1024), the narrow shapes' yardstick.
  for (const shape of quick ? shapes.filter((s) => s[0] * s[1] <= 1 << 20 || s.length > 2 || s.join() === "8192,1024") : shapes) {
    const narrow = NARROW.includes(shape);
    const data = randomData(shape, "NCHW", shape[0] * 131 + shape[1]);
    const names = ["plain JS", "simd zero-copy", ...(narrow ? [] : PATHS)];
    for (const op of OPS) {
      if (narrow && op === "test") continue;
      const runs = [];
      const teardowns = [];
      for (const name of names) {
        const { run, result, teardown } = await pick(name).setup(op, data);
        const error = maxError(await result(), data.expected[op]);
        if (!(error < 1e-3)) throw new Error(`${op} ${shape} ${name}: differs from the reference by ${error}`);
        runs.push(run);
        teardowns.push(teardown);
      }
      const size = data.x.length;
      const calls = Math.max(1, Math.round(4e6 / size));
      const ms = await interleaved(runs, REPS, calls);
      names.forEach((name, k) => results.push({ shape: shape.join("x"), op, implementation: name, nsPerElem: (ms[k] * 1e6) / size }));
      teardowns.forEach((t) => t?.());
    }
  }
  process.stdout.write(JSON.stringify(results) + "\n");
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** The runs, then each target's worst and median run. */
function parent() {
  const runs = [];
  for (let r = 0; r < RUNS; r++) {
    const out = execFileSync(process.execPath, [new URL(import.meta.url).pathname, "--child", ...(quick ? ["--quick"] : [])], {
      encoding: "utf8", maxBuffer: 1 << 26, stdio: ["ignore", "pipe", "inherit"],
    });
    const line = out.trim().split("\n").pop();
    runs.push(JSON.parse(line));
    console.error(`run ${r + 1} of ${RUNS} done`);
  }
  const ns = (run, shape, op, impl) => run.find((x) => x.shape === shape && x.op === op && x.implementation === impl)?.nsPerElem;
  const checks = [];
  const check = (target, shape, op, impl, ratios, min, rule = "every") => {
    const worst = Math.min(...ratios);
    const med = median(ratios);
    const pass = rule === "every" ? worst >= min : med >= min;
    checks.push({ target, shape, op, implementation: impl, runs: ratios, worst, median: med, min, pass });
  };
  const present = (shape) => runs[0].some((x) => x.shape === shape);
  for (const shape of [...ROWS, ...SPATIAL].map((s) => s.join("x")).filter(present)) {
    for (const op of OPS) {
      for (const impl of PATHS.slice(0, 2)) {
        check("outputs given: x plain JS", shape, op, impl, runs.map((r) => ns(r, shape, op, "plain JS") / ns(r, shape, op, impl)), op === "test" ? 4 : 10);
        check("outputs given: zero-copy ÷ this (≥ 1/1.5)", shape, op, impl, runs.map((r) => ns(r, shape, op, "simd zero-copy") / ns(r, shape, op, impl)), 1 / 1.5);
      }
      if (op === "test") continue;
      for (const impl of PATHS.slice(2)) {
        const ratios = runs.map((r) => ns(r, shape, op, "plain JS") / ns(r, shape, op, impl));
        check("fresh results: x plain JS, median of runs", shape, op, impl, ratios, 3, "median");
        check("fresh results: x plain JS, every run", shape, op, impl, ratios, 2);
      }
    }
  }
  for (const shape of NARROW.map((s) => s.join("x")).filter(present)) {
    for (const op of ["train", "backward"]) {
      check("narrow: ns/elem of 8192x1024 ÷ this (≥ 1/1.5)", shape, op, "simd zero-copy",
        runs.map((r) => ns(r, "8192x1024", op, "simd zero-copy") / ns(r, shape, op, "simd zero-copy")), 1 / 1.5);
    }
  }
  console.log(`issue #16 targets, ${RUNS} runs of one process each${quick ? " (--quick)" : ""}: ${os.cpus()[0]?.model}, ${os.cpus().length} cores, Node ${process.version}`);
  console.log("target | shape | op | implementation | worst run | median | needed | holds");
  for (const c of checks) {
    console.log(`${c.target} | ${c.shape} | ${c.op} | ${c.implementation} | ${c.worst.toFixed(2)} | ${c.median.toFixed(2)} | ${c.min.toFixed(2)} | ${c.pass ? "yes" : "NO"}`);
  }
  const failed = checks.filter((c) => !c.pass).length;
  console.log(`${checks.length - failed} of ${checks.length} hold`);
  const json = value("--json", null);
  if (json) writeFileSync(json, JSON.stringify({ node: process.version, cpu: os.cpus()[0]?.model, date: new Date().toISOString(), runs, checks }, null, 1) + "\n");
}
