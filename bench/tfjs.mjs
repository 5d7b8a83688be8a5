// batchnorm-wasm/tfjs against tf.layers.batchNormalization: the batch-norm training step
// (forward with training: true, moving statistics included, then the backward for x, gamma
// and beta from a given dout) and one model.fit step of a small MLP and a small conv net,
// on tfjs-cpu and tfjs-wasm, float32. Stock and ours alternate sample by sample, so drift of
// a shared machine hits both; medians and ratios are printed, and --json writes them.
//
//   node bench/tfjs.mjs [--quick] [--json file] [--backends cpu,wasm]
import { writeFileSync } from "node:fs";
import os from "node:os";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { batchNormalization, wasmDirectReads } from "../dist/tfjs.js";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const jsonAt = args.indexOf("--json");
const jsonFile = jsonAt >= 0 ? args[jsonAt + 1] : null;
const backendsAt = args.indexOf("--backends");
const backends = backendsAt >= 0 ? args[backendsAt + 1].split(",") : ["cpu", "wasm"];

/** Alternates the runs of `fns` until each has `min` samples and `budget` ms passed (or `max` samples); medians in ms. */
function interleaved(fns, { min = 5, max = 30, budget = quick ? 1500 : 6000 } = {}) {
  const times = fns.map(() => []);
  for (const f of fns) f();  // warm-up: compile, allocate, first-call costs
  const start = performance.now();
  while (times[0].length < max && (times[0].length < min || performance.now() - start < budget)) {
    fns.forEach((f, i) => {
      const t0 = performance.now();
      f();
      times[i].push(performance.now() - t0);
    });
  }
  return times.map((t) => median(t));
}

async function interleavedAsync(fns, { min = 5, max = 30, budget = quick ? 1500 : 6000 } = {}) {
  const times = fns.map(() => []);
  for (const f of fns) await f();
  const start = performance.now();
  while (times[0].length < max && (times[0].length < min || performance.now() - start < budget)) {
    for (let i = 0; i < fns.length; i++) {
      const t0 = performance.now();
      await fns[i]();
      times[i].push(performance.now() - t0);
    }
  }
  return times.map((t) => median(t));
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** One forward (training) + backward of a built BN layer, through the tape with dout as the output's gradient. */
function bnStep(layer, x, dout) {
  const [gamma, beta] = ["gamma", "beta"].map((n) => layer.trainableWeights.find((w) => w.originalName.endsWith(n)).read());
  return () => {
    const grads = tf.tidy(() => tf.engine().gradients(() => layer.apply(x, { training: true }), [x, gamma, beta], dout).grads);
    tf.dispose(grads);
  };
}

const shapes = [
  { name: "(256, 1024)", shape: [256, 1024] },
  { name: "(8192, 1024)", shape: [8192, 1024] },
  { name: "(32, 32, 32, 64) NHWC", shape: [32, 32, 32, 64] },
];

function mlp(bn) {
  return tf.sequential({
    layers: [
      tf.layers.dense({ units: 256, inputShape: [256], useBias: false }), bn(), tf.layers.activation({ activation: "relu" }),
      tf.layers.dense({ units: 256, useBias: false }), bn(), tf.layers.activation({ activation: "relu" }),
      tf.layers.dense({ units: 10 }),
    ],
  });
}

function convNet(bn) {
  return tf.sequential({
    layers: [
      tf.layers.conv2d({ filters: 8, kernelSize: 3, padding: "same", inputShape: [16, 16, 3], useBias: false }), bn(),
      tf.layers.activation({ activation: "relu" }), tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 16, kernelSize: 3, padding: "same", useBias: false }), bn(),
      tf.layers.activation({ activation: "relu" }), tf.layers.flatten(), tf.layers.dense({ units: 10 }),
    ],
  });
}

const models = [
  { name: "MLP 256-256-256-10, batch 256", make: mlp, x: [256, 256], y: [256, 10] },
  // tfjs-wasm 4.22 has no Conv2DBackpropFilter kernel: a conv net cannot train there at all.
  { name: "conv net 16×16×3, 8 and 16 filters, batch 32", make: convNet, x: [32, 16, 16, 3], y: [32, 10], backends: ["cpu"] },
];

const results = { date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0]?.model, cores: os.availableParallelism?.() ?? os.cpus().length, tfjs: tf.version.tfjs, rows: [] };
console.log(`batchnorm-wasm/tfjs benchmarks${quick ? " (--quick)" : ""}: ${results.cpu}, ${results.cores} cores, Node ${results.node}, tfjs ${results.tfjs}`);
console.log("median ms per step, stock tf.layers.batchNormalization vs batchnorm-wasm/tfjs; stock/ours = speed-up\n");

for (const backend of backends) {
  await tf.setBackend(backend);
  await tf.ready();
  for (const { name, shape } of shapes) {
    const x = tf.randomNormal(shape, 1, 2);
    const dout = tf.randomNormal(shape);
    const stock = tf.layers.batchNormalization();
    const ours = batchNormalization();
    for (const l of [stock, ours]) tf.dispose(l.apply(x, { training: true }));
    const big = shape.reduce((a, b) => a * b, 1) > 4e6;
    const fns = [bnStep(stock, x, dout), bnStep(ours, x, dout)];
    // On tfjs-wasm, also this layer with dataSync() copies instead of views of tfjs-wasm's memory.
    if (backend === "wasm") {
      const step = bnStep(ours, x, dout);
      fns.push(() => {
        wasmDirectReads.enabled = false;
        try {
          step();
        } finally {
          wasmDirectReads.enabled = true;
        }
      });
    }
    const [s, o, copies] = interleaved(fns, big ? { min: 3, max: 8 } : {});
    report({ backend, what: "batch-norm step", name, stock: s, ours: o, ...(copies === undefined ? {} : { oursWithCopies: copies }) });
    tf.dispose([x, dout]);
    stock.dispose();
    ours.dispose();
  }
  for (const { name, make, x: xs, y: ys, backends } of models) {
    if (backends && !backends.includes(backend)) {
      console.log(`tfjs-${backend.padEnd(4)} model.fit step   ${name}: not run (tfjs-${backend} cannot train it)`);
      continue;
    }
    const x = tf.randomNormal(xs);
    const y = tf.oneHot(tf.randomUniform([ys[0]], 0, ys[1], "int32"), ys[1]).toFloat();
    const pair = [() => tf.layers.batchNormalization(), () => batchNormalization()].map((bn) => {
      const m = make(bn);
      m.compile({ optimizer: tf.train.sgd(0.01), loss: "categoricalCrossentropy" });
      return async () => {
        await m.fit(x, y, { epochs: 1, batchSize: xs[0], verbose: 0 });
      };
    });
    const [s, o] = await interleavedAsync(pair);
    report({ backend, what: "model.fit step", name, stock: s, ours: o });
    tf.dispose([x, y]);
  }
}

function report(row) {
  row.ratio = row.stock / row.ours;
  results.rows.push(row);
  const ms = (v) => (v < 10 ? v.toFixed(2) : v.toFixed(1)).padStart(8);
  const copies = row.oursWithCopies === undefined ? "" : `   (ours with dataSync copies ${ms(row.oursWithCopies).trim()}, ${(row.stock / row.oursWithCopies).toFixed(1)}×)`;
  console.log(`tfjs-${row.backend.padEnd(4)} ${row.what.padEnd(16)} ${row.name.padEnd(46)} stock ${ms(row.stock)}  ours ${ms(row.ours)}  ${row.ratio.toFixed(1).padStart(6)}×${copies}`);
}

if (jsonFile) writeFileSync(jsonFile, JSON.stringify(results, null, 2) + "\n");
