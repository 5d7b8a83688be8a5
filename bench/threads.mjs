// npm run bench:threads [-- --quick] [-- --min BYTES] [-- --shape 8192x1024 ...] [-- --no-torch] [-- --out DIR]
// The zero-copy path (workspace) on 1 and 2 threads at every shape of the suite, timed
// alternately in one process (medians of interleaved samples), with the fork/join cost of
// the pool and the one- and two-thread bandwidth of a triad. --min sets the pool's size
// threshold (default: the package's, THREAD_MIN_BYTES; 0 threads every batch) to measure it.
// PyTorch on 2 threads (Debian's /usr/bin/python3 with torch, bench/torch_baseline.py) is a
// third column, its samples taken in turn with ours; --no-torch leaves it out, and it is left
// out where that Python has no torch. --samples S and --reps R override the samples per
// timing (9 with --quick, else 21) and the calls per sample (~2·10⁷ bytes of x), for tests.
// Writes DIR/threads.json (default bench/results).
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { createInterface } from "node:readline";
import { BatchNorm, init, threads } from "../dist/index.js";
import { engine } from "../dist/wasm.js";
import { createProbe } from "./bandwidth.mjs";
import { interleaved } from "./interleaved.mjs";

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const minAt = argv.indexOf("--min");
const chosen = argv.flatMap((a, i) => (argv[i - 1] === "--shape" ? [a.split("x").map(Number)] : []));
if (chosen.some((s) => s.length < 2 || s.some((v) => !(Number.isInteger(v) && v > 0)))) {
  console.error("--shape takes dimensions joined by x, like 8192x1024 or 8x256x56x56");
  process.exit(2);
}
const SHAPES = chosen.length ? chosen : quick
  ? [[256, 1024], [8192, 1024], [8, 256, 56, 56]]
  : [[64, 256], [256, 1024], [1024, 1024], [8192, 1024], [65536, 1], [16384, 3], [16384, 16], [1024, 1031], [1024, 4096], [32, 64, 32, 32], [8, 256, 56, 56]];
const OPS = ["train", "test", "backward"];
const PYTHON = "/usr/bin/python3";
const numberAfter = (flag) => (argv.includes(flag) ? Number(argv[argv.indexOf(flag) + 1]) : null);
const SAMPLES = numberAfter("--samples") ?? (quick ? 9 : 21);
const REPS = numberAfter("--reps");
if ([SAMPLES, REPS ?? 1].some((v) => !(Number.isInteger(v) && v > 0))) {
  console.error("--samples and --reps take a whole number above 0");
  process.exit(2);
}
const outAt = argv.indexOf("--out");
const OUT = outAt >= 0 ? argv[outAt + 1] : "bench/results";

/** PyTorch in a Python process that times its calls on request; null without torch. */
async function startTorch() {
  const child = spawn(PYTHON, [new URL("./torch_baseline.py", import.meta.url).pathname], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const ask = async (command) => {
    child.stdin.write(command + "\n");
    const { value, done } = await lines.next();
    if (done) throw new Error(`${PYTHON} bench/torch_baseline.py ended: ${stderr.trim().split("\n").at(-1)}`);
    return value;
  };
  try {
    await ask("setup test 1 16,4");
  } catch (e) {
    console.log(`no PyTorch column (${e.message})`);
    return null;
  }
  child.unref();
  return {
    /** Sets up `op` at `shape` on 2 threads; resolves to its sampler, after checking its result against float64. */
    async setup(op, shape) {
      const reply = await ask(`setup ${op} 2 ${shape.join(",")}`);
      const error = Number(reply.split(" ")[1]);
      if (!reply.startsWith("ok") || !(error < 1e-3)) throw new Error(`torch ${op} ${shape.join("x")}: ${reply}`);
      return { sample: async (reps) => Number(await ask(`time ${reps}`)) };
    },
    version: execFileSync(PYTHON, ["-c", "import torch; print(torch.__version__)"]).toString().trim(),
    close: () => child.stdin.end("quit\n"),
  };
}
const torch = argv.includes("--no-torch") ? null : await startTorch();

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
const empty = [[heapBase, []], [heapBase, []]];
const [forkJoinMs] = await interleaved([() => pool.run(empty)], 15, 2000);
// The same 100 µs after the last, as between the calls of a loop: the worker has stopped
// spinning and sleeps in Atomics.wait, so this one includes a wake-up by Atomics.notify.
const afterGap = {
  sample(reps) {
    let total = 0;
    for (let i = 0; i < reps; i++) {
      const until = performance.now() + 0.1;
      while (performance.now() < until);
      const t0 = performance.now();
      pool.run(empty);
      total += performance.now() - t0;
    }
    return total / reps;
  },
};
const [wakeMs] = await interleaved([afterGap], 15, 200);

const results = [];
for (const shape of SHAPES) {
  for (const op of OPS) {
    const one = await setup(shape, op, 1);
    const two = await setup(shape, op, 2);
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    const reps = REPS ?? Math.max(1, Math.round(2e7 / bytes));
    const baseline = torch && (await torch.setup(op, shape));
    const [t1, t2, tTorch] = await interleaved(baseline ? [one, two, baseline] : [one, two], SAMPLES, reps);
    // torch2 ÷ ms2 > 1: the package on 2 threads is faster than PyTorch on 2 threads.
    const vsTorch = tTorch === undefined ? {} : { torchMs2: tTorch, torch2VsOurs2: tTorch / t2 };
    results.push({ op, shape: shape.join("x"), ms1: t1, ms2: t2, speedup: t1 / t2, ...vsTorch });
    console.log(
      `${op.padEnd(9)} ${shape.join("x").padEnd(14)} 1T ${t1.toFixed(4).padStart(9)} ms  2T ${t2.toFixed(4).padStart(9)} ms  ×${(t1 / t2).toFixed(2)}` +
        (tTorch === undefined ? "" : `  torch-2T ${tTorch.toFixed(4).padStart(9)} ms  torch-2T ÷ 2T ${(tTorch / t2).toFixed(2)}`),
    );
  }
}
torch?.close();
console.log(`fork/join of the pool (empty jobs): ${(forkJoinMs * 1000).toFixed(1)} µs back to back, ${(wakeMs * 1000).toFixed(1)} µs 100 µs apart (a wake-up); threshold ${pool.minBytes} bytes`);
// A triad over 192 MiB (beyond the caches) on this thread, then split with a worker.
const triadBytes = 192 * 2 ** 20;
const triad = { bytes: triadBytes, gbps1: createProbe().bandwidth(triadBytes, quick ? 0.1 : 0.3).triad, gbps2: createProbe({ threads: 2 }).bandwidth(triadBytes, quick ? 0.1 : 0.3).triad };
console.log(`triad over 192 MiB: 1T ${triad.gbps1.toFixed(1)} GB/s, 2T ${triad.gbps2.toFixed(1)} GB/s (×${(triad.gbps2 / triad.gbps1).toFixed(2)})`);
mkdirSync(OUT, { recursive: true });
writeFileSync(`${OUT}/threads.json`, JSON.stringify({
  date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, loadavg: os.loadavg(),
  minBytes: pool.minBytes, forkJoinUs: forkJoinMs * 1000, forkJoinAfterGapUs: wakeMs * 1000, triad, torch: torch ? { version: torch.version, threads: 2 } : null, results,
}, null, 2) + "\n");
process.exit(0);
