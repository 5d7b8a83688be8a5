// The browser demo: live training with and without batch normalization, and a benchmark of
// this package against plain JavaScript in the visitor's own browser.
import { BatchNorm, backend, init, reference } from "batchnorm-wasm";
import { spirals, rng } from "../data.js";
import { Adam, FullyConnectedNet } from "../network.js";
import { lineChart } from "../report.js";

interface DemoState {
  losses: { withBn: number[]; withoutBn: number[] };
  done: boolean;
  bench: { op: string; packageNs: number; plainNs: number; speedup: number }[] | null;
}
const state: DemoState = { losses: { withBn: [], withoutBn: [] }, done: false, bench: null };
(window as unknown as { __demo: DemoState }).__demo = state;

const $ = (id: string) => document.getElementById(id)!;
const params = new URLSearchParams(location.search);
const epochs = Number(params.get("epochs") ?? 8);

await init();
$("backend").textContent = backend();

function drawChart() {
  const series = (values: number[]) => values.map((v, i) => [i + 1, v] as [number, number]);
  $("chart").innerHTML = lineChart("Training loss per iteration", "iteration", "loss", [
    { name: "with batch norm", color: "#1b6ef3", points: series(state.losses.withBn) },
    { name: "without batch norm", color: "#db4437", points: series(state.losses.withoutBn) },
  ], { yMin: 0 });
}

const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));

async function train() {
  $("train").setAttribute("disabled", "");
  state.losses = { withBn: [], withoutBn: [] };
  state.done = false;
  const data = spirals({ seed: 1, classes: 5, perClass: 200, dims: 32, valFraction: 0.2 });
  const batchSize = 100;
  const B = batchSize;
  const nets = {
    withBn: new FullyConnectedNet({ inputDim: 32, hiddenDims: [100, 100, 100, 100, 100], classes: 5, weightScale: 1e-2, batchNorm: true, seed: 1 }),
    withoutBn: new FullyConnectedNet({ inputDim: 32, hiddenDims: [100, 100, 100, 100, 100], classes: 5, weightScale: 1e-2, batchNorm: false, seed: 1 }),
  };
  const optimizers = { withBn: new Adam(nets.withBn.params), withoutBn: new Adam(nets.withoutBn.params) };
  const uniform = rng(8);
  const order = Array.from({ length: data.train.n }, (_, i) => i);
  const xb = new Float32Array(B * 32);
  const yb = new Int32Array(B);
  for (let epoch = 1; epoch <= epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(uniform() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (let b = 0; b + B <= order.length; b += B) {
      for (let r = 0; r < B; r++) {
        const src = order[b + r];
        xb.set(data.train.x.subarray(src * 32, (src + 1) * 32), r * 32);
        yb[r] = data.train.y[src];
      }
      for (const key of ["withBn", "withoutBn"] as const) {
        state.losses[key].push(nets[key].lossAndGradients(xb, yb, B));
        optimizers[key].step();
      }
      drawChart();
      $("status").textContent = `epoch ${epoch}/${epochs}: loss ${state.losses.withBn.at(-1)!.toFixed(3)} with batch norm, ${state.losses.withoutBn.at(-1)!.toFixed(3)} without`;
      await frame();
    }
  }
  nets.withBn.dispose();
  $("status").textContent += " — done";
  state.done = true;
  $("train").removeAttribute("disabled");
}

/** Median ns per element of `run` over repeated timings of about 20 ms. */
function time(run: () => unknown, elements: number): number {
  run();
  let reps = 1;
  for (let t = 0; t < 5; reps *= 2) {
    const start = performance.now();
    for (let i = 0; i < reps; i++) run();
    if (performance.now() - start > 20) break;
    t = 0;
  }
  const samples: number[] = [];
  for (let k = 0; k < 7; k++) {
    const start = performance.now();
    for (let i = 0; i < reps; i++) run();
    samples.push(((performance.now() - start) * 1e6) / reps / elements);
  }
  return samples.sort((a, b) => a - b)[3];
}

async function bench() {
  $("bench").setAttribute("disabled", "");
  $("bench-status").textContent = "measuring…";
  await frame();
  const n = 256;
  const d = 1024;
  const normal = () => Math.sqrt(-2 * Math.log(Math.random())) * Math.cos(2 * Math.PI * Math.random());
  const x = Float32Array.from({ length: n * d }, () => 3 + 2 * normal());
  const dout = Float32Array.from({ length: n * d }, normal);
  const layer = new BatchNorm(d);
  const ws = layer.workspace(n);
  ws.x.set(x);
  ws.dout.set(dout);
  ws.forward();
  const ones = new Float32Array(d).fill(1);
  const zeros = new Float32Array(d);
  const stats = () => [0, 1, 2, 3].map(() => new Float32Array(d)) as [Float32Array, Float32Array, Float32Array, Float32Array];
  const runMean = new Float32Array(d);
  const runVar = new Float32Array(d);
  const [mean, meanLo, variance, invStd] = stats();
  reference.forwardTrain(x, n, d, 1, ones, zeros, 1e-5, 0.9, 1, runMean, runVar, new Float32Array(n * d), mean, meanLo, variance, invStd);
  const rows = [
    {
      op: "forward (train)",
      packageNs: time(() => ws.forward(), n * d),
      plainNs: time(() => reference.forwardTrain(x, n, d, 1, ones, zeros, 1e-5, 0.9, 1, runMean, runVar, new Float32Array(n * d), ...stats()), n * d),
    },
    {
      op: "backward",
      packageNs: time(() => ws.backward(), n * d),
      plainNs: time(() => reference.backward(1, dout, x, n, d, 1, ones, mean, meanLo, invStd, new Float32Array(n * d), new Float32Array(d), new Float32Array(d)), n * d),
    },
  ].map((r) => ({ ...r, speedup: r.plainNs / r.packageNs }));
  ws.dispose();
  state.bench = rows;
  $("bench-results").innerHTML = `<table><tr><th></th><th>batchnorm-wasm (${backend()}, zero-copy)</th><th>plain JavaScript</th><th>speed-up</th></tr>${rows
    .map((r) => `<tr><td>${r.op}</td><td>${r.packageNs.toFixed(3)} ns/elem</td><td>${r.plainNs.toFixed(3)} ns/elem</td><td>${r.speedup.toFixed(1)}×</td></tr>`)
    .join("")}</table>`;
  $("bench-status").textContent = "done";
  $("bench").removeAttribute("disabled");
}

$("train").addEventListener("click", () => void train());
$("bench").addEventListener("click", () => void bench());
drawChart();
