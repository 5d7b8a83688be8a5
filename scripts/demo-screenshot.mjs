// npm run demo:screenshot: docs/demo-web.png, the browser demo in headless Chromium (Debian's
// chromium, or CHROMIUM_PATH) after a training with the default controls and a benchmark run.
import { fileURLToPath } from "node:url";
import { chromium } from "playwright";
import { createServer } from "vite";

const root = fileURLToPath(new URL("..", import.meta.url));
const server = await createServer({ configFile: `${root}demo/web/vite.config.ts`, server: { port: 0, host: "127.0.0.1" }, logLevel: "warn" });
await server.listen();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const problems = [];
  page.on("console", (m) => ["error", "warning"].includes(m.type()) && problems.push(m.text()));
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(server.resolvedUrls.local[0]);
  await page.waitForFunction(() => document.getElementById("backend")?.textContent !== "…");
  await page.click("#train");
  await page.waitForFunction(() => window.__demo.done, null, { timeout: 120_000 });
  await page.click("#bench");
  await page.waitForFunction(() => window.__demo.bench !== null, null, { timeout: 120_000 });
  if (problems.length) throw new Error(`the page logged:\n${problems.join("\n")}`);
  const path = `${root}docs/demo-web.png`;
  await page.screenshot({ path, fullPage: true });
  console.log(`wrote ${path}`);
} finally {
  await browser.close();
  await server.close();
}
