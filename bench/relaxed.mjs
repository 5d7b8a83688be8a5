// The relaxed-SIMD build against the plain SIMD build (issue #16): both engines in one
// process (init({ relaxed: false }) and the default), a layer on each, the zero-copy
// workspace path (nothing copied but O(C) parameters), float32 (DTYPE), one thread. Train forward,
// test forward and backward of BatchNorm, and the forwards of LayerNorm and GroupNorm (whose
// apply is the relaxed build's group-apply), timed interleaved, medians of REPS timings.
// Needs an engine with relaxed SIMD (Node 22+). Usage: npm run bench:relaxed [-- --json file]
import { writeFileSync } from "node:fs";
import { BatchNorm, GroupNorm, LayerNorm, initSync, simdBuild } from "../dist/index.js";
import { interleaved } from "./interleaved.mjs";

const REPS = Number(process.env.REPS ?? 15);
const args = process.argv.slice(2);
const jsonAt = args.indexOf("--json");
// SHAPES='[[64, 256]]' for others; NORMS=0 skips the ReLU, LayerNorm and GroupNorm cases.
const SHAPES = process.env.SHAPES ? JSON.parse(process.env.SHAPES) : [[8192, 1024], [256, 1024], [8, 256, 56, 56]];
const NORMS = process.env.NORMS !== "0";
// DTYPE=float64 for the f64 kernels.
const dtype = process.env.DTYPE ?? "float32";

initSync({ backend: "simd", relaxed: false });
if (simdBuild() !== "simd") throw new Error("no plain SIMD build");
const plainEngine = new BatchNorm(1).engine;
initSync({ backend: "simd" });
if (simdBuild() !== "relaxed") throw new Error(`this engine has no relaxed SIMD (Node ${process.version}): use Node 22 or later`);

function fill(a, seed) {
  let s = seed;
  for (let i = 0; i < a.length; i++) a[i] = ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 4 - 1.5;
}

/** A workspace of `make()` on the plain engine (relaxed false) or the relaxed one, random x and dout. */
function workspaceOf(make, shape, relaxed) {
  initSync({ backend: "simd", relaxed });
  const layer = make();
  if ((layer.engine === plainEngine) === relaxed) throw new Error("wrong engine");
  // Random gamma and beta: with beta 0 a fused x̂·γ + 0 rounds as the unfused product.
  fill(layer.gamma, 3);
  fill(layer.beta, 5);
  const ws = layer.workspace(shape);
  fill(ws.x, 7);
  fill(ws.dout, 11);
  return { layer, ws };
}

function maxDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const results = [];
/** Times `op` on the plain and relaxed workspaces (A, B, A, B, …), prints ns per element. */
async function compare(name, shape, plain, relaxed, op) {
  const size = plain.ws.size;
  const calls = Math.max(1, Math.round(2e7 / size));
  op(plain);
  op(relaxed);
  const diff = maxDiff(plain.ws[op.output], relaxed.ws[op.output]);
  const [a, b] = await interleaved([() => op(plain), () => op(relaxed)], REPS, calls);
  const ns = (ms) => (ms * 1e6) / size;
  results.push({ name, shape, op: op.label, plainNs: ns(a), relaxedNs: ns(b), ratio: a / b, maxDiff: diff });
  console.log(`${name.padEnd(32)} ${op.label.padEnd(9)} simd ${ns(a).toFixed(3)} ns, relaxed ${ns(b).toFixed(3)} ns per element: ${(a / b).toFixed(3)}x (max |Δ| ${diff.toExponential(1)})`);
}

const train = Object.assign((w) => { w.layer.train(); w.ws.forward(); }, { label: "train", output: "out" });
const test = Object.assign((w) => { w.layer.eval(); w.ws.forward(); }, { label: "test", output: "out" });
const backward = Object.assign((w) => w.ws.backward(), { label: "backward", output: "dx" });
const forward = Object.assign((w) => w.ws.forward(), { label: "forward", output: "out" });

console.log(`relaxed SIMD against SIMD, ${dtype}, one thread, Node ${process.version}; REPS = ${REPS}, medians; machine shared with other jobs`);
for (const shape of SHAPES) {
  const make = () => new BatchNorm(shape[1], { dtype });
  const plain = workspaceOf(make, shape, false);
  const relaxed = workspaceOf(make, shape, true);
  const name = `BatchNorm (${shape.join(", ")})`;
  await compare(name, shape, plain, relaxed, train);
  await compare(name, shape, plain, relaxed, test);
  // The backward of a train forward.
  train(plain);
  train(relaxed);
  await compare(name, shape, plain, relaxed, backward);
  plain.ws.dispose();
  relaxed.ws.dispose();
}
if (NORMS) {
  // The fused ReLU's backward apply (its forward is not relaxed: the mask must match).
  const shape = [8192, 1024];
  const make = () => new BatchNorm(1024, { activation: "relu", dtype });
  const plain = workspaceOf(make, shape, false);
  const relaxed = workspaceOf(make, shape, true);
  train(plain);
  train(relaxed);
  await compare("BatchNorm + ReLU (8192, 1024)", shape, plain, relaxed, backward);
  plain.ws.dispose();
  relaxed.ws.dispose();
}
for (const [name, shape, make] of !NORMS ? [] : [
  ["LayerNorm (8192, 1024)", [8192, 1024], () => new LayerNorm(1024, { dtype })],
  ["GroupNorm NCHW (8, 256, 56, 56)", [8, 256, 56, 56], () => new GroupNorm(32, 256, { dtype })],
  ["GroupNorm NHWC (8, 256, 56, 56)", [8, 256, 56, 56], () => new GroupNorm(32, 256, { layout: "NHWC", dtype })],
]) {
  const plain = workspaceOf(make, shape, false);
  const relaxed = workspaceOf(make, shape, true);
  await compare(name, shape, plain, relaxed, forward);
  plain.ws.dispose();
  relaxed.ws.dispose();
}
if (jsonAt >= 0) writeFileSync(args[jsonAt + 1], JSON.stringify({ node: process.version, dtype, date: new Date().toISOString(), reps: REPS, results }, null, 2));
