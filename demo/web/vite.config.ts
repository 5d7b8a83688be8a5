import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

/**
 * Cross-origin isolation (COOP + COEP): without it a browser gives a page no SharedArrayBuffer,
 * and batchnorm-wasm runs on one thread (docs/threads.md, "The browser demo").
 */
export const isolationHeaders = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

// npm run demo:web serves this page. The package is used from its TypeScript source, under the
// name a user imports it by. The dev and preview servers both send the isolation headers.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  resolve: { alias: { "batchnorm-wasm": fileURLToPath(new URL("../../src/index.ts", import.meta.url)) } },
  server: { host: "127.0.0.1", headers: isolationHeaders },
  preview: { host: "127.0.0.1", headers: isolationHeaders },
});
