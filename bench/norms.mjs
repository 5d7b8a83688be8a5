// LayerNorm and GroupNorm: the package's zero-copy workspace (layer.workspace(shape)) and
// functional API (outputs given, and allocating), against plain JavaScript (the package's
// two-pass float64 reference loops, outputs allocated per call) and, for LayerNorm
// (64, 4096), tf.layers.layerNormalization and tf.moments + ops on tfjs-wasm.
// float32, SIMD backend, one thread (and the workspace on two); all timings of one shape interleaved in one process,
// medians. SOL: 12 bytes per element (x read twice, out written; backward: x and dout read,
// dx written) at the triad bandwidth of the working set (bench/bandwidth.mjs).
//
//   npm run bench:norms [-- --quick] [-- --json file]
import { writeFileSync } from "node:fs";
import os from "node:os";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { GroupNorm, LayerNorm, init, initSync, layernormBackward, layernormForward, spatialGroupnormBackward, spatialGroupnormForward } from "../dist/index.js";
import { groupBackward, groupForward } from "../dist/reference-norms.js";
import { createProbe } from "./bandwidth.mjs";
import { interleaved } from "./interleaved.mjs";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const jsonAt = args.indexOf("--json");
const jsonFile = jsonAt >= 0 ? args[jsonAt + 1] : null;
const REPS = quick ? 5 : 15;
const EPS = 1e-5;

// name, logical shape, G (null: LayerNorm over the last dimension), layout
const CASES = [
  ["LayerNorm (8192, 1024)", [8192, 1024], null, "NCHW"],
  ["LayerNorm (64, 4096)", [64, 4096], null, "NCHW"],
  ["GroupNorm (8, 256, 56, 56) G = 32 NCHW", [8, 256, 56, 56], 32, "NCHW"],
  ["GroupNorm (8, 256, 56, 56) G = 32 NHWC", [8, 256, 56, 56], 32, "NHWC"],
];

initSync({ backend: "simd" });
await tf.setBackend("wasm");
await tf.ready();

function random(seed, n, scale = 1, loc = 0) {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    a[i] = loc + scale * ((s / 2 ** 31) * 2 - 1);
  }
  return a;
}

function maxDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * LayerNorm over the last axis in TensorFlow.js: tf.layers.layerNormalization, or the same
 * written with tf.moments and four element-wise ops; apply, and the gradients of Σ out·dout.
 */
function tfjsLayerNorm(shape, x, gamma, beta, dout, kind) {
  const xT = tf.tensor(x, shape);
  const doutT = tf.tensor(dout, shape);
  let g = tf.tensor(gamma);
  let b = tf.tensor(beta);
  let apply = (input, gammaT, betaT) => {
    const { mean, variance } = tf.moments(input, -1, true);
    return input.sub(mean).mul(tf.rsqrt(variance.add(EPS))).mul(gammaT).add(betaT);
  };
  if (kind === "layer") {
    const layer = tf.layers.layerNormalization({ axis: -1, epsilon: EPS });
    layer.build(shape);
    layer.setWeights([g, b]);
    [g, b] = layer.trainableWeights.map((w) => w.read());
    apply = (input) => layer.apply(input);
  }
  return {
    forward: () => tf.tidy(() => apply(xT, g, b).dataSync()),
    backward: () => tf.tidy(() => {
      const { grads } = tf.engine().gradients(() => apply(xT, g, b), [xT, g, b], doutT);
      return grads.map((t) => t.dataSync());
    }),
  };
}

/** Median ms of `reps` calls of `run`, after one call. */
function medianOf(run, reps) {
  run();
  const times = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    run();
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[reps >> 1];
}

const probe = createProbe();
const machine = { cpu: os.cpus()[0]?.model ?? "unknown", cores: os.cpus().length, node: process.version, tfjs: tf.version.tfjs, date: new Date().toISOString() };
console.log(`LayerNorm / GroupNorm, float32, one thread${quick ? " (--quick)" : ""}: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, tfjs ${machine.tfjs}`);
console.log(`medians of ${REPS} interleaved timings, ns per element; × = plain JS ÷ this; machine shared with other jobs\n`);
const results = [];
for (const [name, shape, G, layout] of CASES) {
  const size = shape.reduce((a, b) => a * b, 1);
  const C = shape[1];
  const x = random(size + 1, size, 2, 3);
  const dout = random(size + 2, size);
  const gamma = random(3, C, 0.5, 1);
  const beta = random(4, C);
  const S = G === null ? 1 : shape.slice(2).reduce((a, b) => a * b, 1);
  const s = G === null ? { n: shape[0], G: 1, K: shape[1], S } : { n: shape[0], G, K: shape[1] / G, S };
  // Plain JS works on (n, G, K, S) data: for NHWC it gets the same values channels first (its best case).
  const plain = {
    forward: () => {
      const out = new Float32Array(size);
      const stats = [0, 1, 2, 3].map(() => new Float32Array(s.n * s.G));
      groupForward(x, s.n, s.G, s.K, s.S, gamma, beta, EPS, out, ...stats);
      return { out, stats };
    },
  };
  const saved = plain.forward().stats;
  plain.backward = () => {
    const dx = new Float32Array(size);
    groupBackward(dout, x, s.n, s.G, s.K, s.S, saved[0], saved[1], saved[3], gamma, dx, new Float32Array(C), new Float32Array(C));
    return dx;
  };
  const out = new Float32Array(size);
  const grads = { dx: new Float32Array(size), dgamma: new Float32Array(C), dbeta: new Float32Array(C) };
  const fwd = G === null
    ? (o) => layernormForward(x, gamma, beta, { eps: EPS }, o ? { out: o } : undefined)
    : (o) => spatialGroupnormForward(x, gamma, beta, G, { eps: EPS }, shape, layout, o ? { out: o } : undefined);
  const bwd = G === null ? layernormBackward : spatialGroupnormBackward;
  const { cache } = fwd(out);
  const layer = G === null ? new LayerNorm(shape[1]) : new GroupNorm(G, shape[1], { layout });
  layer.gamma.set(gamma);
  layer.beta.set(beta);
  const ws = layer.workspace(shape);
  ws.x.set(x);
  ws.dout.set(dout);
  // The same on the threads build's 2 threads (the layer keeps the engine it was made with).
  await init({ threads: 2 });
  const layer2 = G === null ? new LayerNorm(shape[1]) : new GroupNorm(G, shape[1], { layout });
  initSync({ backend: "simd", threads: 1 });
  layer2.gamma.set(gamma);
  layer2.beta.set(beta);
  const ws2 = layer2.workspace(shape);
  ws2.x.set(x);
  ws2.dout.set(dout);
  // The same results as the functional API (NHWC: compared in its own layout).
  const check = { out: Math.max(maxDiff(ws.forward(), out), maxDiff(ws2.forward(), out)), dx: maxDiff(ws.backward(), bwd(dout, cache, grads).dx) };
  if (!(check.out < 1e-4 && check.dx < 1e-4)) throw new Error(`${name}: workspace and functional differ (${check.out}, ${check.dx})`);
  if (layout === "NCHW") {
    const ref = plain.forward().out;
    if (!(maxDiff(ref, out) < 1e-3)) throw new Error(`${name}: differs from plain JS by ${maxDiff(ref, out)}`);
  }
  const calls = Math.max(1, Math.round(4e6 / size));
  const names = ["plain JS", "workspace (zero-copy)", "workspace, 2 threads", "functional, outputs given", "functional, allocating"];
  const forwardRuns = [plain.forward, () => ws.forward(), () => ws2.forward(), () => fwd(out), () => fwd()];
  const backwardRuns = [plain.backward, () => ws.backward(), () => ws2.backward(), () => bwd(dout, cache, grads), () => bwd(dout, cache)];
  const bandwidth = probe.bandwidth(3 * size * 4, quick ? 0.1 : 0.3).triad;
  const sol = 12 / bandwidth; // ns per element
  console.log(`${name}: SOL ${sol.toFixed(3)} ns (triad ${bandwidth.toFixed(1)} GB/s at ${((3 * size * 4) / 2 ** 20).toFixed(0)} MiB)`);
  const report = (op, impl, ns, plainNs) => {
    results.push({ case: name, op, implementation: impl, nsPerElem: ns, xPlainJs: plainNs / ns, xSol: ns / sol });
    console.log(`  ${op.padEnd(8)} ${impl.padEnd(30)} ${ns.toFixed(3).padStart(9)} ns  ${(plainNs / ns).toFixed(2).padStart(6)}×  ${(ns / sol).toFixed(2).padStart(7)}× SOL`);
  };
  const plainNs = {};
  for (const [op, runs] of [["train", forwardRuns], ["backward", backwardRuns]]) {
    const ns = (await interleaved(runs, REPS, calls)).map((t) => (t * 1e6) / size);
    plainNs[op] = ns[0];
    names.forEach((impl, k) => report(op, impl, ns[k], ns[0]));
  }
  // TensorFlow.js takes hundreds of ns per element (its layer's backward thousands: over a
  // minute a call at (8192, 1024)): a few calls each, after the others, at (64, 4096).
  if (G === null && size <= 1 << 20) {
    for (const kind of ["ops", "layer"]) {
      const peer = tfjsLayerNorm(shape, x, gamma, beta, dout, kind);
      const diff = maxDiff(peer.forward(), out);
      if (!(diff < 1e-3)) throw new Error(`${name}: tfjs ${kind} differs by ${diff}`);
      const impl = kind === "layer" ? "tfjs-wasm layerNormalization" : "tfjs-wasm moments + ops";
      for (const op of ["train", "backward"]) report(op, impl, (medianOf(op === "train" ? peer.forward : peer.backward, 3) * 1e6) / size, plainNs[op]);
    }
  }
  ws.dispose();
  ws2.dispose();
}
if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ machine, quick, results }, null, 1) + "\n");
