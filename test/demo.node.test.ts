// `npm start --quick` end to end: batch normalization must show what it is for.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";

const script = new URL("../build/demo/train.js", import.meta.url).pathname;

describe("npm start -- --quick", () => {
  const out = mkdtempSync(join(tmpdir(), "bn-report-"));
  const stdout = execFileSync(process.execPath, [script, "--quick", "--out", out], { encoding: "utf8" });
  const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"));

  test("prints progress, a summary and the report's path", () => {
    expect(stdout).toMatch(/with batch norm\s+\[#+\]/);
    expect(stdout).toMatch(/Experiment 1, 8 epochs/);
    expect(stdout).toContain(join(out, "index.html"));
  });

  test("the batch-normalized net reaches a lower training loss in the same epochs", () => {
    const last = (a: number[]) => a[a.length - 1];
    const lowest = (a: (number | null)[]) => Math.min(...a.map((v) => v ?? Infinity));
    const { withBn, withoutBn } = summary.experiment1;
    expect(withBn.loss).toHaveLength(8);
    expect(lowest(withBn.loss)).toBeLessThan(0.6 * lowest(withoutBn.loss));
    expect(last(withBn.valAcc)).toBeGreaterThan(last(withoutBn.valAcc));
  });

  test("the batch-normalized net is far less sensitive to the initialization scale", () => {
    const { scales, withBn, withoutBn } = summary.experiment2;
    expect(scales.length).toBeGreaterThanOrEqual(5);
    // Final training loss across scales: finite and low everywhere with batch norm; stuck at
    // chance (ln 5 ≈ 1.609) for small scales, or diverging for large ones, without it.
    const spread = (a: (number | null)[]) => Math.max(...a.map((v) => v ?? Infinity)) - Math.min(...a.map((v) => v ?? Infinity));
    expect(withBn.finalLoss.every((v: number | null) => v !== null && v < 1.45)).toBe(true);
    expect(withoutBn.finalLoss.filter((v: number | null) => v === null || v > 1.55).length).toBeGreaterThanOrEqual(3);
    expect(spread(withBn.finalLoss)).toBeLessThan(0.5 * spread(withoutBn.finalLoss));
    // The worst scale: still learning with batch norm, at chance without it.
    expect(Math.min(...withBn.bestValAcc)).toBeGreaterThan(Math.min(...withoutBn.bestValAcc) + 0.3);
  });

  test("writes a self-contained HTML report with its charts", () => {
    const html = readFileSync(join(out, "index.html"), "utf8");
    expect(html.match(/<svg /g)?.length).toBe(4);
    for (const title of ["Training loss per iteration", "Accuracy per epoch", "Best validation accuracy vs weight scale", "Final training loss vs weight scale"]) {
      expect(html).toContain(title);
    }
    expect(html).not.toMatch(/<script|src="http/);
    expect(existsSync(join(out, "loss.svg"))).toBe(true);
    expect(existsSync(join(out, "weight-scale.svg"))).toBe(true);
  });
});
