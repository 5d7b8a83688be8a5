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
    expect(stdout).toMatch(/Experiment 3: best \/ final val acc/);
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

  test("experiment 3: batch norm needs a big enough batch; small batches make its statistics noisy", () => {
    const { batchSizes, withBn, withoutBn } = summary.experiment3;
    expect(batchSizes).toEqual([5, 10, 50]);
    expect(summary.epochs.experiment3).toBe(4);
    const last = (a: number[]) => a[a.length - 1];
    for (const h of [...withBn, ...withoutBn]) {
      expect(h.loss).toHaveLength(4);
      expect(h.valAcc).toHaveLength(4);
      expect(h.loss.every((v: number | null) => v !== null && v > 0)).toBe(true);
    }
    const [bn5, , bn50] = withBn;
    const [plain5, , plain50] = withoutBn;
    // With batch norm, batch 50 trains to a far lower loss and a higher accuracy than batch 5.
    expect(last(bn50.loss)).toBeLessThan(0.5 * last(bn5.loss));
    expect(Math.max(...bn50.valAcc)).toBeGreaterThan(Math.max(...bn5.valAcc) + 0.15);
    // Its advantage over the plain net is large at batch 50 and gone at batch 5.
    expect(last(plain50.loss) - last(bn50.loss)).toBeGreaterThan(0.5);
    expect(last(plain5.loss) - last(bn5.loss)).toBeLessThan(0.2);
  });

  test("experiment 3: layer norm's statistics come from each row, so the batch size hardly matters", () => {
    const { withBn, withLn } = summary.experiment3;
    const last = (a: number[]) => a[a.length - 1];
    expect(withLn).toHaveLength(3);
    for (const h of withLn) {
      expect(h.loss).toHaveLength(4);
      expect(h.loss.every((v: number | null) => v !== null && v > 0)).toBe(true);
    }
    const spread = (runs: { loss: number[] }[]) => Math.max(...runs.map((h) => last(h.loss))) / Math.min(...runs.map((h) => last(h.loss)));
    // At batch 5 layer norm trains far better than batch norm, and its final loss varies
    // less across batch sizes than batch norm's.
    expect(last(withLn[0].loss)).toBeLessThan(0.5 * last(withBn[0].loss));
    expect(spread(withLn)).toBeLessThan(spread(withBn));
  });

  const html = readFileSync(join(out, "index.html"), "utf8");
  const charts = Object.fromEntries(
    [...html.matchAll(/<svg [\s\S]*?<\/svg>/g)].map(([svg]) => [/font-weight="bold">([^<]*)</.exec(svg)![1], svg]),
  );
  const ticks = (svg: string, axis: "x" | "y") => [...svg.matchAll(new RegExp(`class="${axis}tick">([^<]*)<`, "g"))].map((m) => m[1]);

  test("writes a self-contained HTML report with its charts", () => {
    expect(html.match(/<svg /g)?.length).toBe(6);
    expect(Object.keys(charts)).toEqual([
      "Training loss per iteration", "Accuracy per epoch", "Best validation accuracy vs weight scale",
      "Final training loss vs weight scale", "Validation accuracy per epoch, by batch size", "Training loss per epoch, by batch size",
    ]);
    expect(html).not.toMatch(/<script|src="http/);
    expect(html).not.toMatch(/NaN|Infinity/);
    for (const file of ["loss.svg", "weight-scale.svg", "batch-size.svg"]) expect(existsSync(join(out, file))).toBe(true);
  });

  test("every table shows best and final validation accuracy", () => {
    const tables = [...html.matchAll(/<table>([\s\S]*?)<\/table>/g)].map((m) => m[1]);
    expect(tables).toHaveLength(3);
    for (const t of tables) {
      expect(t).toMatch(/<th>best val acc/);
      expect(t).toMatch(/<th>final val acc/);
    }
    // Experiment 1's best epoch is reported with its number, and is at least the final one.
    const { withBn } = summary.experiment1;
    const bestPct = `${(100 * Math.max(...withBn.valAcc)).toFixed(1)}% (epoch ${withBn.valAcc.indexOf(Math.max(...withBn.valAcc)) + 1})`;
    expect(tables[0]).toContain(`<td>${bestPct}</td>`);
  });

  test("ticks are round numbers: 1, 2 or 5 × 10^k steps; whole epochs and iterations", () => {
    const round = (v: number) => v === 0 || [1, 2, 5].some((m) => Math.abs(Math.abs(v) / 10 ** Math.floor(Math.log10(Math.abs(v)) + 1e-9) - m) < 1e-6);
    for (const [title, svg] of Object.entries(charts)) {
      for (const axis of ["x", "y"] as const) {
        const values = ticks(svg, axis).map(Number);
        expect(values.length, `${title} ${axis}`).toBeGreaterThanOrEqual(2);
        expect(values.every(Number.isFinite), `${title} ${axis}`).toBe(true);
        const steps = values.slice(1).map((v, i) => v - values[i]);
        const logAxis = values.every((v) => v > 0) && values.slice(1).every((v, i) => v / values[i] >= 2 - 1e-9);
        if (logAxis) expect(values.every(round), `${title} ${axis}: ${values}`).toBe(true);
        else expect(steps.every((d) => round(d) && Math.abs(d - steps[0]) < 1e-9), `${title} ${axis}: ${values}`).toBe(true);
      }
    }
    expect(ticks(charts["Accuracy per epoch"], "x")).toEqual(["0", "2", "4", "6", "8"]);
    expect(ticks(charts["Training loss per iteration"], "x").every((t) => /^\d+$/.test(t))).toBe(true);
  });

  test("the final loss vs weight scale chart has a log y axis", () => {
    const y = ticks(charts["Final training loss vs weight scale"], "y").map(Number);
    // Powers of ten, one decade apart, spanning the diverged run (hundreds) and the rest.
    expect(y.slice(1).every((v, i) => Math.abs(v / y[i] - 10) < 1e-9)).toBe(true);
    expect(y[0]).toBeLessThanOrEqual(0.2);
    expect(y[y.length - 1]).toBeGreaterThanOrEqual(100);
  });
});
