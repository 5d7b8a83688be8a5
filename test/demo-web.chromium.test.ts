// npm run demo:web, opened in Chromium: the page loads with no console errors or warnings and
// no failed request (favicon included), its empty charts have finite round axes, the controls
// set up a paced live training with and without batch norm, Stop stops it, and the benchmark
// panel measures this package against plain JavaScript over several shapes. Served with the
// COOP/COEP headers of its Vite config it runs on 2 threads (this machine's cores); served
// without them it falls back to one thread, with no error.
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright";
import { type ViteDevServer, build, createServer, preview } from "vite";
import { afterAll, beforeAll, expect, test } from "vitest";
import demoConfig, { isolationHeaders } from "../demo/web/vite.config.js";
import { launchChromium } from "./support/chromium.js";

type Key = "withBn" | "withoutBn";
interface DemoState {
  config: { weightScale: number; batchSize: number; epochs: number };
  losses: Record<Key, number[]>;
  valAcc: Record<Key, number[]>;
  draws: number;
  trainMs: number;
  running: boolean;
  done: boolean;
  stopped: boolean;
  bench: {
    shape: [number, number]; op: string;
    workspaceNs: number; functionalNs: number; plainNs: number; workspaceSpeedup: number; functionalSpeedup: number;
    workspace1Ns: number | null; threadsSpeedup: number | null; workspaceError: number;
  }[] | null;
  isolated: boolean;
  threadsWanted: number;
  threads: number | null;
}

let server: ViteDevServer;
let browser: Browser;
let page: Page;
/** Console errors and warnings, uncaught exceptions, failed requests and HTTP errors. */
const problems: string[] = [];
const requests: string[] = [];

beforeAll(async () => {
  server = await createServer({ configFile: new URL("../demo/web/vite.config.ts", import.meta.url).pathname, server: { port: 0, host: "127.0.0.1" }, logLevel: "warn" });
  await server.listen();
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("request", (r) => requests.push(r.url()));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  // Two epochs of 8 batches, paced over about 1.5 s.
  await page.goto(`${server.resolvedUrls!.local[0]}?epochs=2&pace=1500`);
  await page.waitForFunction(() => document.getElementById("backend")?.textContent !== "…");
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

const demo = () => page.evaluate(() => (window as unknown as { __demo: DemoState }).__demo);
const waitDone = () => page.waitForFunction(() => (window as unknown as { __demo: DemoState }).__demo.done, null, { timeout: 90_000 });
const ticks = (selector: string, axis: "x" | "y") =>
  page.$$eval(`${selector} text.${axis}tick`, (els) => els.map((e) => e.textContent ?? ""));

/** Calls of the page's active engine that were split between threads (the module the page itself loaded). */
// A string: vitest would rewrite an import() in a function's source.
const forks = () => page.evaluate<number | null>(`import(${JSON.stringify(`/@fs${fileURLToPath(new URL("../src/wasm.ts", import.meta.url))}`)})
  .then((wasm) => wasm.engine().pool?.forks ?? null)`);

test("the page runs the SIMD backend, loads without console errors or failed requests, and has an inline favicon", async () => {
  expect(await page.textContent("#backend")).toBe("simd");
  // Let a late favicon request or console message arrive.
  await page.waitForTimeout(500);
  expect(problems).toEqual([]);
  expect(await page.getAttribute("link[rel=icon]", "href")).toMatch(/^data:image\/svg\+xml,/);
  expect(requests.filter((u) => /favicon/.test(u))).toEqual([]);
});

test("served with COOP/COEP, the page is cross-origin isolated and runs on 2 threads, and says so", async () => {
  const headers = (await page.request.get(server.resolvedUrls!.local[0])).headers();
  expect(headers["cross-origin-opener-policy"]).toBe("same-origin");
  expect(headers["cross-origin-embedder-policy"]).toBe("require-corp");
  expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
  const s = await demo();
  expect(s.isolated).toBe(true);
  // min(4, navigator.hardwareConcurrency): this machine has 2 cores.
  expect(s.threadsWanted).toBe(Math.min(4, await page.evaluate(() => navigator.hardwareConcurrency)));
  expect(s.threadsWanted).toBeGreaterThan(1);
  expect(s.threads).toBe(s.threadsWanted);
  expect(Number(await page.textContent("#threads"))).toBe(s.threads);
  expect(await page.textContent("#threads-note")).toMatch(/cross-origin isolated: this page's thread and 1 worker on one shared memory/);
  expect(await forks()).toBe(0);
});

test("before training, the empty charts have finite, round axes and their legends", async () => {
  for (const selector of ["#chart", "#acc-chart"]) {
    const html = await page.innerHTML(selector);
    expect(html).not.toMatch(/NaN|Infinity/);
    const y = (await ticks(selector, "y")).map(Number);
    const x = (await ticks(selector, "x")).map(Number);
    expect(y.length).toBeGreaterThanOrEqual(3);
    expect(x.length).toBeGreaterThanOrEqual(2);
    for (const v of [...x, ...y]) expect(Number.isFinite(v)).toBe(true);
    expect(await page.$$eval(`${selector} text.legend`, (els) => els.map((e) => e.textContent))).toEqual(["with batch norm", "without batch norm"]);
  }
  expect(await ticks("#acc-chart", "y")).toEqual(["0", "0.2", "0.4", "0.6", "0.8", "1"]);
  expect(await ticks("#acc-chart", "x")).toEqual(["0", "1", "2"]); // epochs=2 from the URL
});

test("the legend sits above the plot, clear of the curves", async () => {
  const boxes = await page.$eval("#chart svg", (svg) => {
    const plot = Array.from(svg.querySelectorAll("rect")).find((r) => r.getAttribute("stroke") === "#ccc")!.getBBox();
    const legend = Array.from(svg.querySelectorAll("text.legend")).map((t) => (t as SVGGraphicsElement).getBBox());
    return { plotTop: plot.y, legendBottoms: legend.map((b) => b.y + b.height) };
  });
  for (const bottom of boxes.legendBottoms) expect(bottom).toBeLessThanOrEqual(boxes.plotTop);
});

test("training is live and paced: the charts redraw as both nets train, with finite losses", async () => {
  await page.click("#train");
  // While it runs, the controls are disabled and Stop is enabled.
  await page.waitForFunction(() => (window as unknown as { __demo: DemoState }).__demo.losses.withBn.length > 0);
  expect(await page.isDisabled("#train")).toBe(true);
  expect(await page.isDisabled("#bench")).toBe(true);
  expect(await page.isDisabled("#scale")).toBe(true);
  expect(await page.isEnabled("#stop")).toBe(true);
  const partial = await page.$$eval("#chart path", (els) => els.map((e) => (e.getAttribute("d") ?? "").split("L").length));
  await waitDone();
  const s = await demo();
  expect(s.config).toEqual({ weightScale: 0.01, batchSize: 100, epochs: 2 });
  expect(s.losses.withBn.length).toBe(16); // 2 epochs of 8 batches
  expect(s.losses.withoutBn.length).toBe(16);
  for (const v of [...s.losses.withBn, ...s.losses.withoutBn]) expect(Number.isFinite(v)).toBe(true);
  expect(s.valAcc.withBn).toHaveLength(2);
  expect(s.valAcc.withoutBn).toHaveLength(2);
  // Live: the chart was drawn part-way (fewer points than at the end) and once per step here.
  expect(partial.length).toBe(2);
  expect(Math.max(...partial)).toBeLessThan(16);
  expect(s.draws).toBeGreaterThanOrEqual(16);
  // Paced: about 1.5 s asked for.
  expect(s.trainMs).toBeGreaterThan(1200);
  const paths = await page.$$eval("#chart path", (els) => els.map((e) => (e.getAttribute("d") ?? "").split("L").length));
  expect(paths).toEqual([16, 16]);
  expect(await page.textContent("#status")).toMatch(/done in \d/);
  expect(await page.isEnabled("#train")).toBe(true);
  expect(await page.isDisabled("#stop")).toBe(true);
  expect(await page.innerHTML("#chart")).not.toMatch(/NaN|Infinity/);
  expect(problems).toEqual([]);
});

test("the controls choose weight scale, batch size and epochs; at scale 1e-3 only batch norm learns", async () => {
  await page.selectOption("#scale", "0.001");
  await page.selectOption("#batch", "50");
  await page.fill("#epochs", "3");
  await page.dispatchEvent("#epochs", "change");
  expect(await ticks("#acc-chart", "x")).toEqual(["0", "1", "2", "3"]);
  await page.click("#train");
  await waitDone();
  const s = await demo();
  expect(s.config).toEqual({ weightScale: 0.001, batchSize: 50, epochs: 3 });
  expect(s.losses.withBn.length).toBe(48); // 3 epochs of 800 / 50 batches
  // Without batch norm the signal vanishes through five layers: the loss stays at chance, ln 5.
  expect(s.losses.withoutBn.at(-1)!).toBeGreaterThan(1.55);
  expect(s.losses.withBn.at(-1)!).toBeLessThan(s.losses.withoutBn.at(-1)! - 0.2);
  expect(Math.max(...s.valAcc.withBn)).toBeGreaterThan(Math.max(...s.valAcc.withoutBn) + 0.2);
  expect(await page.textContent("#chart svg text")).toMatch(/batch 50, weight scale 0\.001/);
  expect(problems).toEqual([]);
});

test("Stop ends a long training early and re-enables the controls", async () => {
  await page.fill("#epochs", "30");
  await page.click("#train");
  await page.waitForFunction(() => (window as unknown as { __demo: DemoState }).__demo.losses.withBn.length >= 5);
  await page.click("#stop");
  await waitDone();
  const s = await demo();
  expect(s.stopped).toBe(true);
  expect(s.losses.withBn.length).toBeLessThan(30 * 16);
  expect(await page.textContent("#status")).toMatch(/stopped/);
  expect(await page.isEnabled("#train")).toBe(true);
  expect(problems).toEqual([]);
});

test("the benchmark measures workspace, functional API and plain JavaScript over four shapes, as a chart and a table", async () => {
  await page.click("#bench");
  await page.waitForFunction(() => (window as unknown as { __demo: DemoState }).__demo.bench !== null, null, { timeout: 110_000 });
  const { bench } = await demo();
  expect(bench!.map((r) => `${r.shape.join("x")} ${r.op}`)).toEqual(
    ["32x256", "128x512", "256x1024", "2048x64"].flatMap((s) => [`${s} forward (train)`, `${s} backward`]),
  );
  for (const r of bench!) {
    for (const v of [r.workspaceNs, r.functionalNs, r.plainNs]) expect(v).toBeGreaterThan(0);
    expect(r.workspaceSpeedup).toBeCloseTo(r.plainNs / r.workspaceNs, 6);
    expect(r.functionalSpeedup).toBeCloseTo(r.plainNs / r.functionalNs, 6);
  }
  // SIMD beats plain JavaScript on the biggest batch's forward pass on the zero-copy path.
  expect(bench!.find((r) => r.shape[0] === 256 && r.op === "forward (train)")!.workspaceSpeedup).toBeGreaterThan(1);
  expect(await page.$$eval("#bench-chart rect.bar", (els) => els.length)).toBe(16);
  expect(await page.$$eval("#bench-results tr", (els) => els.length)).toBe(1 + 8);
  expect(await page.textContent("#bench-status")).toMatch(/^done: 4 shapes, simd backend, 2 threads$/);
  // Threaded and correct: the workspace's out and dx against plain JavaScript (float64 sums)
  // at every shape, and (256, 1024), 1 MiB of x, was split between the threads (the smaller
  // ones, under THREAD_MIN_BYTES, are not); each shape also timed on one thread.
  for (const r of bench!) {
    expect(r.workspaceError).toBeLessThan(1e-5);
    expect(r.workspace1Ns).toBeGreaterThan(0);
    expect(r.threadsSpeedup).toBeCloseTo(r.workspace1Ns! / r.workspaceNs, 6);
  }
  expect(await forks()).toBeGreaterThan(0);
  expect(await page.$$eval("#bench-results tr:first-child th", (els) => els.map((e) => e.textContent))).toContain("workspace, 1 thread");
  expect(await page.isEnabled("#train")).toBe(true);
  expect(problems).toEqual([]);
  mkdirSync("build/screenshots", { recursive: true });
  await page.screenshot({ path: "build/screenshots/demo-web.png", fullPage: true });
});

test("served without COOP/COEP, the page falls back to one thread, says why, and trains with no error", async () => {
  // The demo's own config with the isolation headers taken out.
  expect(demoConfig.server!.headers).toEqual(isolationHeaders);
  const plain = await createServer({
    ...demoConfig, configFile: false, server: { ...demoConfig.server, headers: {}, port: 0 }, logLevel: "warn",
  });
  await plain.listen();
  const other = await browser.newPage();
  const issues: string[] = [];
  other.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") issues.push(`console.${m.type()}: ${m.text()}`);
  });
  other.on("pageerror", (e) => issues.push(`page error: ${e.message}`));
  try {
    const url = plain.resolvedUrls!.local[0];
    expect((await other.request.get(url)).headers()["cross-origin-embedder-policy"]).toBeUndefined();
    await other.goto(`${url}?epochs=1&pace=300`);
    await other.waitForFunction(() => document.getElementById("backend")?.textContent !== "…");
    const state = () => other.evaluate(() => (window as unknown as { __demo: DemoState }).__demo);
    expect(await other.evaluate(() => [crossOriginIsolated, typeof SharedArrayBuffer])).toEqual([false, "undefined"]);
    expect(await other.textContent("#backend")).toBe("simd");
    expect(await other.textContent("#threads")).toBe("1");
    expect(await other.textContent("#threads-note")).toMatch(/not cross-origin isolated, so it has no shared memory: one thread/);
    expect(await state()).toMatchObject({ isolated: false, threadsWanted: 1, threads: 1 });
    await other.click("#train");
    await other.waitForFunction(() => (window as unknown as { __demo: DemoState }).__demo.done, null, { timeout: 60_000 });
    const s = await state();
    expect(s.losses.withBn).toHaveLength(8);
    for (const v of [...s.losses.withBn, ...s.losses.withoutBn]) expect(Number.isFinite(v)).toBe(true);
    expect(issues).toEqual([]);
  } finally {
    await other.close();
    await plain.close();
  }
});

test("built and served by vite preview, the demo is cross-origin isolated too and runs on 2 threads", async () => {
  const configFile = fileURLToPath(new URL("../demo/web/vite.config.ts", import.meta.url));
  const outDir = mkdtempSync(join(tmpdir(), "bn-demo-preview-"));
  await build({ configFile, logLevel: "warn", build: { outDir, emptyOutDir: true } });
  const server = await preview({ configFile, logLevel: "warn", build: { outDir }, preview: { port: 0 } });
  const other = await browser.newPage();
  const issues: string[] = [];
  other.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") issues.push(`console.${m.type()}: ${m.text()}`);
  });
  other.on("pageerror", (e) => issues.push(`page error: ${e.message}`));
  try {
    const url = server.resolvedUrls!.local[0];
    const headers = (await other.request.get(url)).headers();
    expect([headers["cross-origin-opener-policy"], headers["cross-origin-embedder-policy"]]).toEqual(["same-origin", "require-corp"]);
    await other.goto(url);
    await other.waitForFunction(() => document.getElementById("backend")?.textContent !== "…");
    expect(await other.evaluate(() => crossOriginIsolated)).toBe(true);
    expect(await other.textContent("#threads")).toBe("2");
    expect(await other.evaluate(() => (window as unknown as { __demo: DemoState }).__demo.threads)).toBe(2);
    expect(issues).toEqual([]);
  } finally {
    await other.close();
    await server.close();
  }
});
