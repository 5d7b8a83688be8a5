// Single-thread memory bandwidth at a given working-set size, measured with the WASM SIMD
// loops of bench/assembly/bandwidth.ts. The speed of light (SOL) of an operation is the
// bytes it must move divided by the bandwidth of the matching loop at its working-set size.
// The same module measures how fast the floating-point adders take f32x4 additions: the
// adder floor of an operation is its vector additions and subtractions at that rate.
// createProbe({ threads: 2 }) measures the same loops split between this thread and a worker
// on one shared memory (the package's own pool, src/threads.ts): the two-thread bandwidth.
import { readFileSync } from "node:fs";
import { Pool, threadHost } from "../dist/threads.js";

const PAGE = 65536;
/** The maximum of the shared memory, as build/bandwidth.threads.wasm declares it (1 GiB). */
const SHARED_PAGES = 16384;

/** Median GB/s of `run` moving `bytes` per call, repeated for about `seconds`. */
function measure(run, bytes, seconds) {
  run();
  const reps = Math.max(1, Math.round(2e8 / bytes)); // ~0.2 GB per timing
  const times = [];
  const stop = performance.now() + seconds * 1000;
  while (times.length < 5 || (performance.now() < stop && times.length < 200)) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) run();
    times.push((performance.now() - t0) / reps);
  }
  times.sort((a, b) => a - b);
  const ms = times[times.length >> 1];
  return (bytes / (ms * 1e-3)) / 1e9;
}

export function createProbe({ threads = 1 } = {}) {
  const file = threads > 1 ? "bandwidth.threads.wasm" : "bandwidth.wasm";
  const module = new WebAssembly.Module(readFileSync(new URL(`../build/${file}`, import.meta.url)));
  // Built with the project's asconfig.json, the probe imports its memory like the kernels do.
  const memory = threads > 1 ? new WebAssembly.Memory({ initial: 1, maximum: SHARED_PAGES, shared: true }) : new WebAssembly.Memory({ initial: 1 });
  const { exports: e } = new WebAssembly.Instance(module, { env: { memory } });
  const base = Math.ceil(e.heapBase() / 4096) * 4096;
  const pool = threads > 1 ? startPool(module, memory, e, threads) : null;

  function ensure(bytes) {
    const need = base + bytes - memory.buffer.byteLength;
    if (need > 0) memory.grow(Math.ceil(need / PAGE));
  }

  /**
   * Bandwidth in GB/s of read-sum, copy and triad, each over arrays that together span
   * `workingSet` bytes (so copy uses two arrays of half that, triad three of a third).
   */
  function bandwidth(workingSet, seconds = 0.3) {
    const floats = (parts) => Math.max(16, Math.floor(workingSet / 4 / parts / 16) * 16);
    ensure(workingSet + 3 * 4096 + 64);
    const n1 = floats(1);
    const n2 = floats(2);
    const n3 = floats(3);
    // Arrays apart modulo 4 KiB, as the package lays out its own.
    const at = (i, n) => base + i * (Math.ceil((n * 4) / 4096) * 4096 + 1088);
    const f = new Float32Array(memory.buffer);
    f.fill(1, base / 4, (base + workingSet) / 4);
    if (pool) return splitBandwidth(pool, { n1, n2, n3, at, base }, seconds);
    return {
      read: measure(() => e.readSum(base, n1), n1 * 4, seconds),
      copy: measure(() => e.copy(at(1, n2), at(0, n2), n2), n2 * 8, seconds),
      triad: measure(() => e.triad(at(0, n3), at(1, n3), at(2, n3), 1.5, n3), n3 * 12, seconds),
    };
  }

  /** Median nanoseconds per f32x4 addition, independent ones back to back (throughput). */
  function vectorAddNanoseconds(seconds = 0.3) {
    const iterations = 1 << 18; // × 32 additions
    e.addChains(iterations);
    const times = [];
    const stop = performance.now() + seconds * 1000;
    while (times.length < 5 || (performance.now() < stop && times.length < 200)) {
      const t0 = performance.now();
      e.addChains(iterations);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return (times[times.length >> 1] * 1e6) / (iterations * 32);
  }

  return { bandwidth, vectorAddNanoseconds, threads: pool ? pool.size : 1 };
}

/** Workers for the probe's module on `memory`: the pool the package's threaded engine uses. */
function startPool(module, memory, e, threads) {
  const host = threadHost();
  if (!host) throw new Error("the two-thread bandwidth probe needs SharedArrayBuffer, Atomics and worker_threads");
  const names = Object.keys(e).filter((name) => typeof e[name] === "function");
  const pool = new Pool(host, [module], memory, names, (fn, args) => void e[names[fn]](...args), threads - 1);
  pool.waitReady();
  if (pool.size !== threads) throw new Error(`the bandwidth probe's workers did not start (${pool.departures.join("; ")})`);
  return pool;
}

/**
 * The loops of bandwidth() with each array cut into one part per thread (whole 64-byte
 * blocks), each thread running its part `reps` times in one job, so that one fork/join is
 * paid per timing of ~0.2 GB. GB/s of all threads together.
 */
function splitBandwidth(pool, { n1, n2, n3, at, base }, seconds) {
  const index = (name) => pool.names.indexOf(name);
  const parts = (n) => {
    const share = Math.ceil(n / pool.size / 16) * 16;
    return Array.from({ length: pool.size }, (_, k) => [k * share, Math.max(0, Math.min(share, n - k * share))]);
  };
  const loop = (name, n, bytesPerFloat, args) => {
    const reps = Math.max(1, Math.round(2e8 / (n * bytesPerFloat)));
    const jobs = parts(n).map(([first, count]) => [index(name), [...args(first * 4), count, reps]]);
    return measure(() => pool.run(jobs), n * bytesPerFloat * reps, seconds);
  };
  return {
    read: loop("readSumRepeat", n1, 4, (o) => [base + o]),
    copy: loop("copyRepeat", n2, 8, (o) => [at(1, n2) + o, at(0, n2) + o]),
    triad: loop("triadRepeat", n3, 12, (o) => [at(0, n3) + o, at(1, n3) + o, at(2, n3) + o, 1.5]),
  };
}
