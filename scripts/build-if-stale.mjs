// Runs `npm run build` unless every output is newer than every input, so that a benchmark of
// the tree as it is does not spend a minute rebuilding what has not changed.
import { execSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const INPUTS = ["assembly", "bench/assembly", "src", "demo", "scripts/build-wasm.mjs", "asconfig.json", "package.json",
  "tsconfig.json", "tsconfig.cjs.json", "tsconfig.demo.json"];
const OUTPUTS = ["src/generated/binaries.ts", "build/bandwidth.wasm", "dist/index.js", "dist/cjs/index.js", "build/demo/train.js"];

/** The newest modification time under a path (src/generated is an output: skipped). */
function newest(path) {
  if (path === "src/generated") return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((name) => newest(join(path, name))));
}

const oldestOutput = Math.min(...OUTPUTS.map((p) => (existsSync(p) ? statSync(p).mtimeMs : 0)));
const newestInput = Math.max(...INPUTS.filter(existsSync).map(newest));
if (newestInput >= oldestOutput) execSync("npm run build --silent", { stdio: "inherit" });
