// The tfjs entry as built (dist/), in Node: the main entry's import graph stays free of
// tfjs, batchnorm-wasm/tfjs resolves for import and require through package.json "exports",
// and a model saved to files loads back.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as esbuild from "esbuild";
import * as tf from "@tensorflow/tfjs";
import { describe, expect, test } from "vitest";
import { BatchNormalization, batchNormalization } from "../src/tfjs.js";

const root = new URL("..", import.meta.url).pathname;

/** Every file the bundler pulls in from `entry`, following imports and requires. */
async function importGraph(entry: string, format: "esm" | "cjs") {
  const result = await esbuild.build({
    absWorkingDir: root, entryPoints: [entry], bundle: true, write: false, metafile: true, format, platform: "node", logLevel: "silent",
  });
  return Object.keys(result.metafile!.inputs);
}

describe("the main entry does not import tfjs", () => {
  test.each([["dist/index.js", "esm"], ["dist/cjs/index.js", "cjs"], ["src/index.ts", "esm"]] as const)("%s", async (entry, format) => {
    expect(existsSync(join(root, entry)), `${entry} is missing: run npm run build:ts`).toBe(true);
    const files = await importGraph(entry, format);
    expect(files.length).toBeGreaterThan(3);
    expect(files.filter((f) => f.includes("@tensorflow"))).toEqual([]);
  });

  test("while the tfjs entry does (the check above can fail)", async () => {
    const files = await importGraph("dist/tfjs.js", "esm");
    expect(files.some((f) => f.includes("@tensorflow/tfjs-layers"))).toBe(true);
    expect(files.some((f) => f.includes("@tensorflow/tfjs-core"))).toBe(true);
  });
});

// Run in a child process from the repository, so that "batchnorm-wasm/tfjs" resolves through
// the package's own "exports" (self-reference), as a user's import would.
const program = (load: string) => `${load}
const x = tf.tensor2d([[1, 2], [3, 5], [4, 0]]);
const ours = m.batchNormalization({ momentum: 0.5 });
const stock = tf.layers.batchNormalization({ momentum: 0.5 });
const y = ours.apply(x, { training: true }).arraySync();
const z = stock.apply(x, { training: true }).arraySync();
const registered = tf.serialization.SerializationMap.getMap().classNameMap.BatchNormalizationWasm?.[0] === m.BatchNormalization;
console.log(JSON.stringify({ y, z, registered, stockIsStock: !(stock instanceof m.BatchNormalization), mv: Array.from(ours.getWeights()[3].dataSync()) }));`;

function run(args: string[]) {
  const out = execFileSync(process.execPath, args, { cwd: root, encoding: "utf8", env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "3" } });
  const result = JSON.parse(out.trim().split("\n").at(-1)!);
  expect(result.registered).toBe(true);
  expect(result.stockIsStock).toBe(true);
  result.y.flat().forEach((v: number, i: number) => expect(v).toBeCloseTo(result.z.flat()[i], 4));
  // Column 0 is (1, 3, 4): variance 14/9; moving variance 0.5·1 + 0.5·14/9.
  expect(result.mv[0]).toBeCloseTo(0.5 + 0.5 * (14 / 9), 5);
}

describe("batchnorm-wasm/tfjs through package.json exports", () => {
  test("import (ESM build)", () => {
    run(["--input-type=module", "-e", program(`import * as tf from "@tensorflow/tfjs"; import * as m from "batchnorm-wasm/tfjs";`)]);
  });

  test("require (CJS build)", () => {
    run(["-e", program(`const tf = require("@tensorflow/tfjs"); const m = require("batchnorm-wasm/tfjs");`)]);
  });

  test("a second copy (ESM after CJS, after useForStockLayers) still extends the stock class", () => {
    const out = execFileSync(process.execPath, ["-e", `
const tf = require("@tensorflow/tfjs");
const cjs = require("batchnorm-wasm/tfjs");
cjs.useForStockLayers();
import("batchnorm-wasm/tfjs").then((esm) => {
  const stock = Object.getPrototypeOf(cjs.BatchNormalization);
  console.log(JSON.stringify({ two: esm.BatchNormalization !== cjs.BatchNormalization, same: Object.getPrototypeOf(esm.BatchNormalization) === stock, name: stock.className }));
});`], { cwd: root, encoding: "utf8" });
    expect(JSON.parse(out.trim().split("\n").at(-1)!)).toEqual({ two: true, same: true, name: "BatchNormalization" });
  });

  test("types are declared for both", () => {
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    expect(pkg.exports["./tfjs"]).toEqual({
      import: { types: "./dist/tfjs.d.ts", default: "./dist/tfjs.js" },
      require: { types: "./dist/cjs/tfjs.d.ts", default: "./dist/cjs/tfjs.js" },
    });
    for (const f of ["dist/tfjs.d.ts", "dist/cjs/tfjs.d.ts"]) expect(readFileSync(join(root, f), "utf8")).toContain("export declare function batchNormalization");
    expect(pkg.peerDependenciesMeta).toEqual({ "@tensorflow/tfjs-core": { optional: true }, "@tensorflow/tfjs-layers": { optional: true } });
  });
});

test("save to files and load back (a file-system handler in Node; tf.io's file:// needs tfjs-node)", async () => {
  await tf.setBackend("cpu");
  const model = tf.sequential({ layers: [tf.layers.dense({ units: 4, inputShape: [3] }), batchNormalization({ epsilon: 0.01 }), tf.layers.dense({ units: 2 })] });
  model.compile({ optimizer: "sgd", loss: "meanSquaredError" });
  await model.fit(tf.randomNormal([16, 3]), tf.randomNormal([16, 2]), { epochs: 2, verbose: 0 });
  const dir = mkdtempSync(join(tmpdir(), "bn-tfjs-"));
  try {
    await model.save(tf.io.withSaveHandler(async (a) => {
      writeFileSync(join(dir, "model.json"), JSON.stringify({ modelTopology: a.modelTopology, weightsManifest: [{ paths: ["weights.bin"], weights: a.weightSpecs }] }));
      writeFileSync(join(dir, "weights.bin"), new Uint8Array(a.weightData as ArrayBuffer));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } };
    }));
    const json = JSON.parse(readFileSync(join(dir, "model.json"), "utf8"));
    const bin = readFileSync(join(dir, "weights.bin"));
    const loaded = await tf.loadLayersModel(tf.io.fromMemory({
      modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0].weights, weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
    }));
    expect(loaded.layers[1]).toBeInstanceOf(BatchNormalization);
    const x = tf.randomNormal([5, 3]);
    expect((loaded.predict(x) as tf.Tensor).dataSync()).toEqual((model.predict(x) as tf.Tensor).dataSync());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
