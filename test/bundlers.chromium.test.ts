// A tiny app that imports the packed package, bundled by esbuild, Vite and webpack with no
// configuration about WebAssembly, loaded in Chromium: each must compute the reference.
import { mkdirSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { join } from "node:path";
import * as esbuild from "esbuild";
import type { Browser } from "playwright";
import { build as viteBuild } from "vite";
import webpack from "webpack";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { launchChromium, serve } from "./support/chromium.js";
import { packAndInstall } from "./support/pack.js";

const APP = `import { initSync, backend, batchnormForward, batchnormBackwardAlt } from "batchnorm-wasm";
initSync();
const x = new Float32Array([1, 2, 3, 4, 5, 6]);
const { out, cache } = batchnormForward(x, new Float32Array([2, 2]), new Float32Array([0.5, 0.5]), { mode: "train" });
const { dx, dgamma, dbeta } = batchnormBackwardAlt(new Float32Array([1, -1, 0.5, 2, -0.5, 1]), cache);
window.__result = { backend: backend(), out: Array.from(out), dx: Array.from(dx), dgamma: Array.from(dgamma), dbeta: Array.from(dbeta) };
`;

/** The same computation in float64, written out here: x is (3, 2), gamma 2, beta 0.5. */
function reference() {
  const x = [[1, 2], [3, 4], [5, 6]];
  const g = [[1, -1], [0.5, 2], [-0.5, 1]];
  const n = 3;
  const out: number[] = [], dx: number[] = [], dgamma: number[] = [0, 0], dbeta: number[] = [0, 0];
  const xHat = x.map(() => [0, 0]);
  for (let j = 0; j < 2; j++) {
    const mean = (x[0][j] + x[1][j] + x[2][j]) / n;
    const variance = x.reduce((s, r) => s + (r[j] - mean) ** 2, 0) / n;
    const inv = 1 / Math.sqrt(variance + 1e-5);
    for (let i = 0; i < n; i++) {
      xHat[i][j] = (x[i][j] - mean) * inv;
      dgamma[j] += g[i][j] * xHat[i][j];
      dbeta[j] += g[i][j];
    }
    for (let i = 0; i < n; i++) dx[i * 2 + j] = ((2 * inv) / n) * (n * g[i][j] - dbeta[j] - xHat[i][j] * dgamma[j]);
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < 2; j++) out.push(2 * xHat[i][j] + 0.5);
  return { out, dx, dgamma, dbeta };
}

let dir = "";
let browser: Browser;
let server: Server;
let url = "";

beforeAll(async () => {
  ({ dir } = packAndInstall("bn-bundlers-"));
  writeFileSync(join(dir, "main.js"), APP);
  const page = (script: string, module = false) => `<!doctype html><meta charset="utf-8"><script ${module ? 'type="module" ' : ""}src="${script}"></script>`;

  await esbuild.build({ absWorkingDir: dir, entryPoints: ["main.js"], bundle: true, format: "iife", platform: "browser", outfile: "esbuild/app.js", logLevel: "silent" });
  writeFileSync(join(dir, "esbuild/index.html"), page("app.js"));

  mkdirSync(join(dir, "vite-src"));
  writeFileSync(join(dir, "vite-src/main.js"), APP);
  writeFileSync(join(dir, "vite-src/index.html"), page("./main.js", true));
  await viteBuild({ root: join(dir, "vite-src"), base: "./", logLevel: "silent", configFile: false, build: { outDir: join(dir, "vite"), emptyOutDir: true } });

  await new Promise<void>((resolve, reject) =>
    webpack({ mode: "production", context: dir, entry: "./main.js", target: "web", output: { path: join(dir, "webpack"), filename: "app.js" } }, (err, stats) =>
      err || stats?.hasErrors() ? reject(err ?? new Error(stats!.toString("errors-only"))) : resolve()),
  );
  writeFileSync(join(dir, "webpack/index.html"), page("app.js"));

  ({ url, server } = await serve(dir));
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  server?.close();
});

describe.each(["esbuild", "vite", "webpack"])("bundled by %s", (bundler) => {
  test("computes forward and backward equal to the reference in Chromium, on the SIMD backend", async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${url}${bundler}/index.html`);
    await page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result, null, { timeout: 30_000 });
    const result = await page.evaluate(() => (window as unknown as { __result: Record<string, unknown> }).__result);
    await page.close();
    expect(errors).toEqual([]);
    expect(result.backend).toBe("simd");
    const want = reference();
    for (const key of ["out", "dx", "dgamma", "dbeta"] as const) {
      (result[key] as number[]).forEach((v, i) => expect(v, `${key}[${i}]`).toBeCloseTo(want[key][i], 5));
    }
  });
});
