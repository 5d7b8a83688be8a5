// npm run stress [-- --seconds S] [-- --seed N] [-- --case K [--count M]]
// The threads stress test (scripts/stress-core.mjs) on the built package (dist/): random
// shapes, APIs, modes and thread counts for S seconds (default 180), every result against the
// float64 reference, repeats bit for bit, a watchdog for deadlocks. Prints the seed (--seed
// replays a run, --case K replays its case K alone) and a summary; exits 1 on any failure.
//
// It runs itself as a child process: the watchdog kills a deadlocked process (its thread is
// blocked, nothing else can stop it) and this parent turns that into exit code 1.
import { spawnSync } from "node:child_process";
import { randomInt } from "node:crypto";
import { fileURLToPath } from "node:url";

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const at = argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(argv[at + 1]);
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} needs a number ≥ 0, got ${argv[at + 1]}`);
  return value;
};

if (!process.env.BATCHNORM_STRESS_CHILD) {
  const seed = option("--seed", randomInt(2 ** 31));
  const args = [...argv.filter((_, i) => argv[i] !== "--seed" && argv[i - 1] !== "--seed"), "--seed", String(seed)];
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...args], {
    stdio: "inherit", env: { ...process.env, BATCHNORM_STRESS_CHILD: "1" },
  });
  if (child.status === 0) process.exit(0);
  if (child.signal) console.error(`stress: the run was killed (${child.signal}): a deadlock if the watchdog said so above; replay with --seed ${seed}`);
  process.exit(1);
}

const { stress, formatSummary, describeCase, makeCase } = await import("./stress-core.mjs");
const api = await import("../dist/index.js");
const { engine } = await import("../dist/wasm.js");
const { THREAD_MIN_BYTES } = await import("../dist/tuning.js");

const seed = option("--seed", 0);
const only = option("--case", -1);
const pkg = { api, engine, minBytes: THREAD_MIN_BYTES };
console.log(`stress: seed ${seed} (replay: npm run stress -- --seed ${seed})`);
if (only >= 0) console.log(`stress: ${describeCase(makeCase(seed, only, THREAD_MIN_BYTES))}`);
const summary = await stress(pkg, {
  seed, seconds: option("--seconds", only >= 0 ? Infinity : 180), from: only >= 0 ? only : 0,
  count: only >= 0 ? option("--count", 1) : Infinity, log: (line) => console.log(line),
});
console.log(formatSummary(summary, THREAD_MIN_BYTES).join("\n"));
process.exit(summary.failures.length ? 1 : 0);
