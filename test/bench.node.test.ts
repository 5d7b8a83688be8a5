// The benchmark suite runs end to end (one case, quick timings) and writes its outputs.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";

test("npm run bench -- --quick --filter … writes a table, JSON with SOL ratios and an SVG chart", () => {
  const out = mkdtempSync(join(tmpdir(), "bn-bench-"));
  const script = new URL("../bench/run.mjs", import.meta.url).pathname;
  const stdout = execFileSync(process.execPath, [script, "--quick", "--filter", "^train 64x256 (simd zero-copy|plain JS)$", "--out", out], { encoding: "utf8" });
  expect(stdout).toMatch(/train\s+64x256\s+simd zero-copy\s+[\d.]+ ns\/elem/);
  const report = JSON.parse(readFileSync(join(out, "latest.json"), "utf8"));
  expect(report.results.map((r: { implementation: string }) => r.implementation)).toEqual(["simd zero-copy", "plain JS"]);
  for (const r of report.results) {
    expect(r.nsPerElem).toBeGreaterThan(0);
    expect(r.xSol).toBeCloseTo(r.nsPerElem / r.solNsPerElem, 9);
    expect(r.checkError).toBeLessThan(1e-4);
  }
  expect(report.bandwidth[0].triad).toBeGreaterThan(0);
  expect(readFileSync(join(out, "chart.svg"), "utf8")).toMatch(/^<svg[\s\S]*simd zero-copy[\s\S]*<\/svg>\s*$/);
});
