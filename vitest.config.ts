/// <reference types="@vitest/browser/providers/playwright" />
import { defineConfig } from "vitest/config";

// The same test files run in Node and in headless Chromium (Debian's chromium, driven by
// Playwright; no browser is downloaded). Files named *.node.test.ts need Node's APIs
// (child processes, npm pack) and run in Node only; *.chromium.test.ts run in Node and drive
// Chromium themselves (bundled apps, the demo page). scripts/test.mjs runs the "browser" and
// "chromium" projects when a Chromium is installed.
export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export default defineConfig({
  test: {
    projects: [
      {
        test: { name: "node", include: ["test/**/*.test.ts"], exclude: ["test/**/*.chromium.test.ts"], environment: "node", testTimeout: 60_000 },
      },
      {
        test: { name: "chromium", include: ["test/**/*.chromium.test.ts"], environment: "node", testTimeout: 120_000, hookTimeout: 180_000 },
      },
      {
        test: {
          name: "browser",
          include: ["test/**/*.test.ts"],
          exclude: ["test/**/*.node.test.ts", "test/**/*.chromium.test.ts"],
          testTimeout: 120_000,
          browser: {
            enabled: true,
            provider: "playwright",
            headless: true,
            screenshotFailures: false,
            instances: [
              {
                browser: "chromium",
                launch: {
                  executablePath: chromiumPath,
                  // As root in a sandbox, with no network: no sandbox, no GPU, no background traffic.
                  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
                },
              },
            ],
          },
        },
      },
    ],
  },
});
