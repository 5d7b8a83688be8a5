// The benchmark suite runs end to end (one case, quick timings) and writes its outputs.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect, test } from "vitest";

test("npm run bench -- --quick --filter … writes a table, JSON with SOL and adder-floor ratios and an SVG chart", () => {
  const out = mkdtempSync(join(tmpdir(), "bn-bench-"));
  const script = new URL("../bench/run.mjs", import.meta.url).pathname;
  const stdout = execFileSync(process.execPath, [script, "--quick", "--filter", "^train 64x256 (simd zero-copy|plain JS)$", "--out", out], { encoding: "utf8" });
  expect(stdout).toMatch(/train\s+64x256\s+simd zero-copy\s+[\d.]+ ns\/elem/);
  const report = JSON.parse(readFileSync(join(out, "latest.json"), "utf8"));
  expect(report.results.map((r: { implementation: string }) => r.implementation)).toEqual(["simd zero-copy", "plain JS"]);
  for (const r of report.results) {
    expect(r.nsPerElem).toBeGreaterThan(0);
    expect(r.xSol).toBeCloseTo(r.nsPerElem / r.solNsPerElem, 9);
    // Train: five vector additions per four elements at the measured rate.
    expect(r.addFloorNsPerElem).toBeCloseTo((5 * report.vectorAddNanoseconds) / 4, 9);
    expect(r.xAddFloor).toBeCloseTo(r.nsPerElem / r.addFloorNsPerElem, 9);
    expect(r.checkError).toBeLessThan(1e-4);
  }
  expect(report.bandwidth[0].triad).toBeGreaterThan(0);
  expect(report.vectorAddNanoseconds).toBeGreaterThan(0);
  expect(readFileSync(join(out, "chart.svg"), "utf8")).toMatch(/^<svg[\s\S]*simd zero-copy[\s\S]*<\/svg>\s*$/);
});

// Asynchronous, so that the test worker's event loop is not blocked for the whole run.
const run = async (file: string, args: string[]) => (await promisify(execFile)(process.execPath, [file, ...args], { encoding: "utf8" })).stdout;

test("the bench's threads column times the zero-copy path on 1 and 2 threads alternately, next to the two-thread bandwidth", async () => {
  const out = mkdtempSync(join(tmpdir(), "bn-bench-threads-"));
  const script = new URL("../bench/run.mjs", import.meta.url).pathname;
  // 64x256 (64 KiB of x) is under the pool's threshold; 256x1024 (1 MiB) is split.
  const stdout = await run(script, ["--quick", "--filter", "^backward (64x256|256x1024) (simd|scalar) zero-copy$", "--out", out]);
  expect(stdout).toMatch(/backward\s+256x1024\s+simd zero-copy\s.*1T [\d.]+ \/ 2T [\d.]+ ns\/elem: ×[\d.]+, [\d.]+× 2T SOL/);
  expect(stdout).toMatch(/backward\s+64x256\s+simd zero-copy\s.*\(not split: under the threshold\)/);
  expect(stdout).toMatch(/backward\s+256x1024\s+scalar zero-copy\s.*threads: 1 only/);
  expect(stdout).toMatch(/triad [\d.]+ \(2T [\d.]+\)/);
  const report = JSON.parse(readFileSync(join(out, "latest.json"), "utf8"));
  const row = (shape: string, impl: string) => report.results.find((r: { shape: string; implementation: string }) => r.shape === shape && r.implementation === impl);
  for (const shape of ["64x256", "256x1024"]) {
    const t = row(shape, "simd zero-copy").threads;
    expect(t.threads).toBe(2);
    expect(t.split).toBe(shape === "256x1024");
    expect(t.nsPerElem1).toBeGreaterThan(0);
    expect(t.nsPerElem2).toBeGreaterThan(0);
    expect(t.speedup).toBeCloseTo(t.nsPerElem1 / t.nsPerElem2, 9);
    expect(t.xSol2).toBeCloseTo(t.nsPerElem2 / t.sol2NsPerElem, 9);
    // The two-thread result against the plain-JS reference, like the one-thread one.
    expect(t.checkError).toBeLessThan(1e-4);
    // The scalar backend has no threaded build.
    expect(row(shape, "scalar zero-copy").threads).toBeNull();
  }
  for (const b of report.bandwidth) {
    for (const loop of ["read", "copy", "triad"]) {
      expect(b[loop]).toBeGreaterThan(0);
      expect(b.twoThreads[loop]).toBeGreaterThan(0);
    }
  }
  // The two-thread speed of light uses the two-thread bandwidth of the op's loop (backward: triad, 3 arrays).
  const big = row("256x1024", "simd zero-copy");
  const bw = report.bandwidth.find((b: { workingSetBytes: number }) => b.workingSetBytes === 3 * 256 * 1024 * 4);
  expect(big.threads.sol2NsPerElem).toBeCloseTo(12 / bw.twoThreads.triad, 9);
}, 120_000);

test("npm run bench:native compiles the native kernels, checks every result and writes JSON with SOL ratios", () => {
  const out = mkdtempSync(join(tmpdir(), "bn-native-"));
  const script = new URL("../bench/native.mjs", import.meta.url).pathname;
  const stdout = execFileSync(process.execPath, [script, "--shape", "64x256", "--out", out], { encoding: "utf8" });
  expect(stdout).toMatch(/64x256\s+train\s+[\d.]+\s+[\d.]+ \([\d.]+×\)/);
  const report = JSON.parse(readFileSync(join(out, "native.json"), "utf8"));
  expect(report.results.map((r: { op: string }) => r.op)).toEqual(["train", "backward"]);
  for (const r of report.results) {
    expect(r.solNsPerElem).toBeGreaterThan(0);
    expect(r.wasm).toBeGreaterThan(0);
    expect(Object.keys(r.native)).toEqual(["gcc 128-bit", "gcc AVX2", "gcc AVX2+FMA"]);
    // 128-bit AVX is on every x86-64 CPU of this kind; the 256-bit builds run where the CPU has them.
    expect(r.native["gcc 128-bit"]).toBeGreaterThan(0);
    for (const ns of Object.values(r.native)) if (ns !== null) expect(ns).toBeGreaterThan(0);
  }
}, 120_000);

test("bench/native.mjs refuses a shape its kernels do not handle", () => {
  const script = new URL("../bench/native.mjs", import.meta.url).pathname;
  expect(() => execFileSync(process.execPath, [script, "--shape", "64x250"], { stdio: "pipe" })).toThrow(/multiple of 16/);
});

test("bench/threads.mjs times 1 and 2 threads and PyTorch on 2 threads in turn, each checked, and writes JSON", async () => {
  const out = mkdtempSync(join(tmpdir(), "bn-bench-threads-torch-"));
  const script = new URL("../bench/threads.mjs", import.meta.url).pathname;
  // Few calls: PyTorch's OpenMP threads are slow to meet when the cores are busy (as in the suite).
  const stdout = await run(script, ["--quick", "--samples", "3", "--reps", "4", "--shape", "64x48", "--shape", "4x8x5x5", "--out", out]);
  expect(stdout).toMatch(/backward\s+4x8x5x5\s+1T\s+[\d.]+ ms\s+2T\s+[\d.]+ ms\s+×[\d.]+\s+torch-2T\s+[\d.]+ ms\s+torch-2T ÷ 2T [\d.]+/);
  const report = JSON.parse(readFileSync(join(out, "threads.json"), "utf8"));
  expect(report.torch).toEqual({ version: expect.stringMatching(/^1\.13/), threads: 2 });
  expect(report.results.map((r: { op: string; shape: string }) => `${r.op} ${r.shape}`)).toEqual(
    ["64x48", "4x8x5x5"].flatMap((s) => ["train", "test", "backward"].map((op) => `${op} ${s}`)),
  );
  for (const r of report.results) {
    for (const v of [r.ms1, r.ms2, r.torchMs2]) expect(v).toBeGreaterThan(0);
    expect(r.speedup).toBeCloseTo(r.ms1 / r.ms2, 9);
    expect(r.torch2VsOurs2).toBeCloseTo(r.torchMs2 / r.ms2, 9);
  }
  expect(report.triad.gbps1).toBeGreaterThan(0);
  expect(report.triad.gbps2).toBeGreaterThan(0);
}, 120_000);

test("bench/torch_baseline.py fails on an unknown op rather than timing nothing", () => {
  expect(() => execFileSync("/usr/bin/python3", [new URL("../bench/torch_baseline.py", import.meta.url).pathname], { input: "setup nonsense 1 4,4\n", stdio: "pipe" })).toThrow(/unknown op nonsense/);
});
