// The cost of fresh result arrays: a functional train loop (batchnormForward without outputs
// given, so a new `out` per call) under the default environment and under the two glibc
// settings the README's zero-copy section names, each in its own Node process (the settings
// are read when the process starts). Prints ms per call (median of the loop's calls after a
// warm-up) and minor page faults per call, for each shape.
//
//   node bench/malloc.mjs [--runs 2]
import { execFileSync } from "node:child_process";

const SHAPES = [[256, 1024], [1024, 1024], [8192, 1024]];
const ENVIRONMENTS = [
  ["default", {}],
  ["GLIBC_TUNABLES=glibc.malloc.hugetlb=1", { GLIBC_TUNABLES: "glibc.malloc.hugetlb=1" }],
  ["MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_MMAP_THRESHOLD_=1000000000", { MALLOC_TRIM_THRESHOLD_: "1000000000", MALLOC_MMAP_THRESHOLD_: "1000000000" }],
];

if (process.argv.includes("--child")) {
  const { batchnormForward, initSync } = await import("../dist/index.js");
  initSync({ backend: "simd" });
  const results = [];
  for (const [N, D] of SHAPES) {
    const x = Float32Array.from({ length: N * D }, (_, i) => Math.sin(i) * 2 + 3);
    const gamma = new Float32Array(D).fill(1);
    const beta = new Float32Array(D);
    const bnParam = { mode: "train" };
    const calls = Math.max(20, Math.round(3e8 / (N * D)));
    for (let i = 0; i < 10; i++) batchnormForward(x, gamma, beta, bnParam);
    const times = [];
    const faults0 = process.resourceUsage().minorPageFault;
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now();
      batchnormForward(x, gamma, beta, bnParam);
      times.push(performance.now() - t0);
    }
    const faults = (process.resourceUsage().minorPageFault - faults0) / calls;
    times.sort((a, b) => a - b);
    results.push({ shape: `(${N}, ${D})`, ms: times[times.length >> 1], faults });
  }
  process.stdout.write(JSON.stringify(results) + "\n");
} else {
  const runsAt = process.argv.indexOf("--runs");
  const runs = runsAt >= 0 ? Number(process.argv[runsAt + 1]) : 2;
  console.log(`functional train, fresh out per call; median ms per call (minor page faults per call), ${runs} runs each, Node ${process.version}`);
  console.log(`| environment | ${SHAPES.map(([N, D]) => `(${N}, ${D})`).join(" | ")} |`);
  console.log(`|---|${SHAPES.map(() => "---:").join("|")}|`);
  for (const [name, env] of ENVIRONMENTS) {
    const all = [];
    for (let r = 0; r < runs; r++) {
      const out = execFileSync(process.execPath, [new URL(import.meta.url).pathname, "--child"], { env: { ...process.env, ...env }, encoding: "utf8" });
      all.push(JSON.parse(out.trim().split("\n").pop()));
    }
    const cells = SHAPES.map((_, k) => all.map((r) => `${r[k].ms.toFixed(2)} (${r[k].faults.toFixed(0)})`).join(", "));
    console.log(`| ${name} | ${cells.join(" | ")} |`);
  }
}
