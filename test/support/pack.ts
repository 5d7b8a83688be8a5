// Packs this package with npm and installs the tarball into a fresh folder, as a user would.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = new URL("../..", import.meta.url).pathname;

/**
 * The folder (with node_modules/batchnorm-wasm installed), the packed file list, and what
 * `npm install` of the tarball printed (stdout and stderr), for the warnings a user sees.
 */
export function packAndInstall(prefix: string): { dir: string; files: string[]; installOutput: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const packed = JSON.parse(execFileSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], { cwd: root, encoding: "utf8" }));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "user-app", private: true }));
  const install = spawnSync("npm", ["install", "--no-audit", "--no-fund", "--offline", join(dir, packed[0].filename)], { cwd: dir, encoding: "utf8" });
  const installOutput = `${install.stdout}${install.stderr}`;
  if (install.status !== 0) throw new Error(`npm install of the tarball failed (${install.status}):\n${installOutput}`);
  return { dir, files: packed[0].files.map((f: { path: string }) => f.path), installOutput };
}
