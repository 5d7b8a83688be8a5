// Single-thread memory bandwidth at a given working-set size, measured with the WASM SIMD
// loops of bench/assembly/bandwidth.ts. The speed of light (SOL) of an operation is the
// bytes it must move divided by the bandwidth of the matching loop at its working-set size.
// The same module measures how fast the floating-point adders take f32x4 additions: the
// adder floor of an operation is its vector additions and subtractions at that rate.
import { readFileSync } from "node:fs";

const PAGE = 65536;

export function createProbe() {
  const module = new WebAssembly.Module(readFileSync(new URL("../build/bandwidth.wasm", import.meta.url)));
  // Built with the project's asconfig.json, the probe imports its memory like the kernels do.
  const memory = new WebAssembly.Memory({ initial: 1 });
  const { exports: e } = new WebAssembly.Instance(module, { env: { memory } });
  const base = Math.ceil(e.heapBase() / 4096) * 4096;

  function ensure(bytes) {
    const need = base + bytes - memory.buffer.byteLength;
    if (need > 0) memory.grow(Math.ceil(need / PAGE));
  }

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

  return { bandwidth, vectorAddNanoseconds };
}
