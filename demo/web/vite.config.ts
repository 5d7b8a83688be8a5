import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// npm run demo:web serves this page. The package is used from its TypeScript source, under the
// name a user imports it by.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  resolve: { alias: { "batchnorm-wasm": fileURLToPath(new URL("../../src/index.ts", import.meta.url)) } },
  server: { host: "127.0.0.1" },
});
