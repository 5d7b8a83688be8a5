// npm run demo:web, opened in Chromium: a short training updates the live chart with finite
// losses for both nets, and the benchmark panel reports its measurements.
import { mkdirSync } from "node:fs";
import type { Browser, Page } from "playwright";
import { type ViteDevServer, createServer } from "vite";
import { afterAll, beforeAll, expect, test } from "vitest";
import { launchChromium } from "./support/chromium.js";

interface DemoState {
  losses: { withBn: number[]; withoutBn: number[] };
  done: boolean;
  bench: { op: string; packageNs: number; plainNs: number; speedup: number }[] | null;
}

let server: ViteDevServer;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  server = await createServer({ configFile: new URL("../demo/web/vite.config.ts", import.meta.url).pathname, server: { port: 0, host: "127.0.0.1" } });
  await server.listen();
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${server.resolvedUrls!.local[0]}?epochs=2`);
  await page.waitForFunction(() => document.getElementById("backend")?.textContent !== "…");
  expect(errors).toEqual([]);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

const demo = () => page.evaluate(() => (window as unknown as { __demo: DemoState }).__demo);

test("the page runs the SIMD backend", async () => {
  expect(await page.textContent("#backend")).toBe("simd");
});

test("training updates the chart with finite losses for both nets", async () => {
  await page.click("#train");
  await page.waitForFunction(() => (window as unknown as { __demo: DemoState }).__demo.done, null, { timeout: 90_000 });
  const { losses } = await demo();
  expect(losses.withBn.length).toBe(16); // 2 epochs of 8 batches
  expect(losses.withoutBn.length).toBe(16);
  for (const v of [...losses.withBn, ...losses.withoutBn]) expect(Number.isFinite(v)).toBe(true);
  // The chart drew both curves through every iteration.
  const paths = await page.$$eval("#chart path", (els) => els.map((e) => (e.getAttribute("d") ?? "").split("L").length));
  expect(paths).toEqual([16, 16]);
  expect(await page.textContent("#status")).toMatch(/done/);
});

test("the benchmark panel measures this package and plain JavaScript; a screenshot is saved", async () => {
  await page.click("#bench");
  await page.waitForFunction(() => (window as unknown as { __demo: DemoState }).__demo.bench !== null, null, { timeout: 90_000 });
  const { bench } = await demo();
  expect(bench!.map((r) => r.op)).toEqual(["forward (train)", "backward"]);
  for (const r of bench!) {
    expect(r.packageNs).toBeGreaterThan(0);
    expect(r.plainNs).toBeGreaterThan(0);
    expect(r.speedup).toBeCloseTo(r.plainNs / r.packageNs, 6);
  }
  expect(await page.textContent("#bench-results")).toMatch(/ns\/elem/);
  mkdirSync("build/screenshots", { recursive: true });
  await page.screenshot({ path: "build/screenshots/demo-web.png", fullPage: true });
});
