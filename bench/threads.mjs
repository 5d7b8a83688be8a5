// npm run bench:threads [-- --quick] [-- --min BYTES]
// The zero-copy path (workspace) on 1 and 2 threads at every shape of the suite, timed
// alternately in one process (medians of interleaved samples), with the fork/join cost of
// the pool and the one- and two-thread bandwidth of a triad. --min sets the pool's size
// threshold (default: the package's, THREAD_MIN_BYTES; 0 threads every batch) to measure it.
// Writes bench/results/threads.json.
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { BatchNorm, init, threads } from "../dist/index.js";
import { engine } from "../dist/wasm.js";
import { interleaved } from "./interleaved.mjs";

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const minAt = argv.indexOf("--min");
const SHAPES = quick
  ? [[256, 1024], [8192, 1024], [8, 256, 56, 56]]
  : [[64, 256], [256, 1024], [1024, 1024], [8192, 1024], [65536, 1], [16384, 3], [16384, 16], [1024, 1031], [1024, 4096], [32, 64, 32, 32], [8, 256, 56, 56]];
const OPS = ["train", "test", "backward"];

await init({ threads: 2 });
const pool = engine().pool;
if (!pool || threads() !== 2) throw new Error("bench:threads needs 2 threads (Node with worker_threads)");
if (minAt >= 0) pool.minBytes = Number(argv[minAt + 1]);
await init({ threads: 1 });

function setup(shape, op, count) {
  return init({ threads: count }).then(() => {
    const layer = new BatchNorm(shape[1]);
    const ws = layer.workspace(shape);
    const x = ws.x;
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37) * 2 + 1;
    const dout = ws.dout;
    for (let i = 0; i < dout.length; i++) dout[i] = Math.cos(i * 0.11);
    ws.forward();
    if (op === "test") layer.eval();
    return op === "backward" ? () => ws.backward() : () => ws.forward();
  });
}

// Fork/join: a job that does nothing on both threads (heapBase), Atomics.wait/notify and spins.
const heapBase = pool.names.indexOf("heapBase");
const [forkJoinMs] = await interleaved([() => pool.run([[heapBase, []], [heapBase, []]])], 15, 2000);

const results = [];
for (const shape of SHAPES) {
  for (const op of OPS) {
    const one = await setup(shape, op, 1);
    const two = await setup(shape, op, 2);
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    const reps = Math.max(1, Math.round(2e7 / bytes));
    const [t1, t2] = await interleaved([one, two], quick ? 9 : 21, reps);
    results.push({ op, shape: shape.join("x"), ms1: t1, ms2: t2, speedup: t1 / t2 });
    console.log(`${op.padEnd(9)} ${shape.join("x").padEnd(14)} 1T ${t1.toFixed(4).padStart(9)} ms  2T ${t2.toFixed(4).padStart(9)} ms  ×${(t1 / t2).toFixed(2)}`);
  }
}
console.log(`fork/join of the pool (empty jobs): ${(forkJoinMs * 1000).toFixed(1)} µs; threshold ${pool.minBytes} bytes`);
mkdirSync("bench/results", { recursive: true });
writeFileSync("bench/results/threads.json", JSON.stringify({
  date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, loadavg: os.loadavg(),
  minBytes: pool.minBytes, forkJoinUs: forkJoinMs * 1000, results,
}, null, 2) + "\n");
process.exit(0);
