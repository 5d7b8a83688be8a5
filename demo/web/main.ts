// The browser demo, a small lab: the visitor picks the weight scale, batch size and epochs and
// watches the same net train with and without batch normalization (paced, so the charts are
// seen live), and benchmarks this package against plain JavaScript over several shapes in
// their own browser. URL parameters (?scale=&batch=&epochs=&pace=) preset the controls; pace
// is the target length of a training in milliseconds (default 4000). Served cross-origin
// isolated (COOP/COEP, vite.config.ts), the page runs on 2 threads or more; otherwise on one.
import { BatchNorm, backend, batchnormBackward, batchnormForward, init, reference, threads } from "batchnorm-wasm";
import { rng, spirals } from "../data.js";
import { Adam, FullyConnectedNet } from "../network.js";
import { barChart, formatTick, lineChart } from "../report.js";

type Key = "withBn" | "withoutBn";
interface BenchRow {
  shape: [number, number];
  op: "forward (train)" | "backward";
  /** ns per element. */
  workspaceNs: number;
  functionalNs: number;
  plainNs: number;
  /** plainNs / workspaceNs and plainNs / functionalNs. */
  workspaceSpeedup: number;
  functionalSpeedup: number;
  /** The workspace on one thread, when the page runs on more (else null), and workspace1Ns / workspaceNs. */
  workspace1Ns: number | null;
  threadsSpeedup: number | null;
  /** Largest |workspace − plain JS| / max(1, |plain JS|) of out (forward) or dx (backward). */
  workspaceError: number;
}
interface DemoState {
  config: { weightScale: number; batchSize: number; epochs: number };
  losses: Record<Key, number[]>;
  valAcc: Record<Key, number[]>;
  /** Chart redraws during the last training, and its wall time. */
  draws: number;
  trainMs: number;
  running: boolean;
  done: boolean;
  stopped: boolean;
  bench: BenchRow[] | null;
  /** crossOriginIsolated, the threads asked of init() and threads() after it (null until then). */
  isolated: boolean;
  threadsWanted: number;
  threads: number | null;
}
const state: DemoState = {
  config: { weightScale: 1e-2, batchSize: 100, epochs: 8 },
  losses: { withBn: [], withoutBn: [] },
  valAcc: { withBn: [], withoutBn: [] },
  draws: 0, trainMs: 0, running: false, done: false, stopped: false, bench: null,
  isolated: globalThis.crossOriginIsolated === true,
  // Shared memory needs isolation; past 4 threads a batch this small gains nothing.
  threadsWanted: globalThis.crossOriginIsolated === true ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1,
  threads: null,
};
(window as unknown as { __demo: DemoState }).__demo = state;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const scaleInput = $<HTMLSelectElement>("scale");
const batchInput = $<HTMLSelectElement>("batch");
const epochsInput = $<HTMLInputElement>("epochs");
const params = new URLSearchParams(location.search);
for (const [param, input] of [["scale", scaleInput], ["batch", batchInput], ["epochs", epochsInput]] as const) {
  const v = params.get(param);
  if (v === null) continue;
  if (input instanceof HTMLSelectElement && !Array.from(input.options).some((o) => Number(o.value) === Number(v))) input.add(new Option(v, v));
  input.value = input instanceof HTMLSelectElement ? Array.from(input.options).find((o) => Number(o.value) === Number(v))!.value : v;
}
const pace = Number(params.get("pace") ?? 4000);

const BN = "#1b6ef3";
const PLAIN = "#db4437";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));

const data = spirals({ seed: 1, classes: 5, perClass: 200, dims: 32, valFraction: 0.2 });

function drawCharts() {
  const { batchSize, weightScale, epochs } = state.config;
  const series = (values: number[]) => values.map((v, i) => [i + 1, v] as [number, number]);
  $("chart").innerHTML = lineChart(`Training loss per iteration (batch ${batchSize}, weight scale ${formatTick(weightScale)})`, "iteration", "loss", [
    { name: "with batch norm", color: BN, points: series(state.losses.withBn) },
    { name: "without batch norm", color: PLAIN, points: series(state.losses.withoutBn) },
  ], { yMin: 0, xMin: 0, xMax: Math.floor(data.train.n / batchSize) * epochs, integerX: true, markers: false });
  $("acc-chart").innerHTML = lineChart("Validation accuracy per epoch", "epoch", "accuracy", [
    { name: "with batch norm", color: BN, points: series(state.valAcc.withBn) },
    { name: "without batch norm", color: PLAIN, points: series(state.valAcc.withoutBn) },
  ], { yMin: 0, yMax: 1, xMin: 0, xMax: Math.max(1, state.config.epochs), integerX: true });
  state.draws++;
}

const controls = ["scale", "batch", "epochs", "train", "bench"];
function busy(on: boolean) {
  for (const id of controls) $<HTMLInputElement>(id).disabled = on;
  $<HTMLButtonElement>("stop").disabled = !on || !state.running;
}

function readConfig() {
  const epochs = Math.round(Number(epochsInput.value));
  if (!Number.isFinite(epochs) || epochs < 1 || epochs > 30) throw new RangeError("epochs must be a whole number from 1 to 30");
  return { weightScale: Number(scaleInput.value), batchSize: Number(batchInput.value), epochs };
}

async function train() {
  let config: DemoState["config"];
  try {
    config = readConfig();
  } catch (e) {
    $("status").textContent = (e as Error).message;
    return;
  }
  Object.assign(state, { config, losses: { withBn: [], withoutBn: [] }, valAcc: { withBn: [], withoutBn: [] }, draws: 0, running: true, done: false, stopped: false });
  busy(true);
  const started = performance.now();
  const { weightScale, batchSize: B, epochs } = config;
  const net = (batchNorm: boolean) => new FullyConnectedNet({ inputDim: 32, hiddenDims: [100, 100, 100, 100, 100], classes: 5, weightScale, norm: batchNorm ? "batch" : "none", seed: 1 });
  const nets = { withBn: net(true), withoutBn: net(false) };
  const optimizers = { withBn: new Adam(nets.withBn.params), withoutBn: new Adam(nets.withoutBn.params) };
  const keys = ["withBn", "withoutBn"] as const;
  const uniform = rng(8);
  const order = Array.from({ length: data.train.n }, (_, i) => i);
  const xb = new Float32Array(B * 32);
  const yb = new Int32Array(B);
  // Pacing: spread the steps over about `pace` ms of frames, a few steps per frame when there
  // are many; a fast machine waits, a slow one just runs (it is paced by its own speed).
  const batches = Math.floor(data.train.n / B);
  const steps = batches * epochs;
  const frames = Math.min(steps, Math.max(1, Math.round(pace / 30)));
  const stepsPerFrame = Math.ceil(steps / frames);
  const frameMs = pace / Math.ceil(steps / stepsPerFrame);
  let step = 0;
  let frameStart = performance.now();
  const fmt = (v: number | undefined) => (v === undefined ? "–" : Number.isFinite(v) ? v.toFixed(3) : String(v));
  try {
    for (let epoch = 1; epoch <= epochs && !state.stopped; epoch++) {
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(uniform() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      for (let b = 0; b < batches && !state.stopped; b++) {
        for (let r = 0; r < B; r++) {
          const src = order[b * B + r];
          xb.set(data.train.x.subarray(src * 32, (src + 1) * 32), r * 32);
          yb[r] = data.train.y[src];
        }
        for (const key of keys) {
          state.losses[key].push(nets[key].lossAndGradients(xb, yb, B));
          optimizers[key].step();
        }
        if (++step % stepsPerFrame === 0 || b === batches - 1) {
          if (b === batches - 1) for (const key of keys) state.valAcc[key].push(nets[key].accuracy(data.val.x, data.val.y, data.val.n));
          drawCharts();
          const acc = (key: Key) => (state.valAcc[key].length ? ` (val acc ${(100 * state.valAcc[key].at(-1)!).toFixed(0)}%)` : "");
          $("status").textContent = `epoch ${epoch}/${epochs}, iteration ${step}/${steps}: loss ${fmt(state.losses.withBn.at(-1))} with batch norm${acc("withBn")}, ${fmt(state.losses.withoutBn.at(-1))} without${acc("withoutBn")}`;
          await sleep(Math.max(0, frameMs - (performance.now() - frameStart)));
          await frame();
          frameStart = performance.now();
        }
      }
    }
  } finally {
    nets.withBn.dispose();
    nets.withoutBn.dispose();
    state.trainMs = performance.now() - started;
    $("status").textContent += state.stopped ? " — stopped" : ` — done in ${(state.trainMs / 1000).toFixed(1)} s`;
    state.running = false;
    state.done = true;
    busy(false);
  }
}

/** Largest |got − want| / max(1, |want|). */
function maxError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
  return err;
}

/** Median ns per element of `run` over repeated timings of about 20 ms. */
function time(run: () => unknown, elements: number): number {
  return timeInTurn([run], elements)[0];
}

/**
 * As time(), for several runs with their timings taken in turn (the repetitions sized on the
 * first), so that a change in the machine's load falls on all of them alike.
 */
function timeInTurn(runs: (() => unknown)[], elements: number): number[] {
  for (const run of runs) run();
  let reps = 1;
  for (;;) {
    const start = performance.now();
    for (let i = 0; i < reps; i++) runs[0]();
    if (performance.now() - start > 20 || reps >= 1 << 20) break;
    reps *= 2;
  }
  const samples = runs.map(() => [] as number[]);
  for (let k = 0; k < 5; k++) {
    runs.forEach((run, j) => {
      const start = performance.now();
      for (let i = 0; i < reps; i++) run();
      samples[j].push(((performance.now() - start) * 1e6) / reps / elements);
    });
  }
  return samples.map((v) => v.sort((a, b) => a - b)[2]);
}

const SHAPES: [number, number][] = [[32, 256], [128, 512], [256, 1024], [2048, 64]];

function drawBench(rows: BenchRow[]) {
  const categories = [...new Set(rows.map((r) => `(${r.shape.join(", ")})`))];
  const pick = (op: BenchRow["op"], f: (r: BenchRow) => number) => categories.map((c) => {
    const r = rows.find((row) => row.op === op && `(${row.shape.join(", ")})` === c);
    return r ? f(r) : NaN;
  });
  $("bench-chart").innerHTML = barChart("Speed-up over plain JavaScript (higher is better)", "× plain JS", categories, [
    { name: "workspace, forward", color: "#0b3d91", values: pick("forward (train)", (r) => r.workspaceSpeedup) },
    { name: "workspace, backward", color: "#1b6ef3", values: pick("backward", (r) => r.workspaceSpeedup) },
    { name: "functional, forward", color: "#0f9d58", values: pick("forward (train)", (r) => r.functionalSpeedup) },
    { name: "functional, backward", color: "#7cc49a", values: pick("backward", (r) => r.functionalSpeedup) },
  ], { reference: { value: 1, label: "plain JavaScript = 1×" }, format: (v) => `${v.toFixed(1)}×` });
  const ns = (v: number) => `${v.toFixed(2)}`;
  const n = state.threads ?? 1;
  // With threads, the workspace on one thread too: what the worker adds.
  const one = n > 1;
  const head = one ? `<th>workspace, ${n} threads</th><th>workspace, 1 thread</th>` : "<th>workspace</th>";
  const tail = one ? `<th>${n} threads ÷ 1</th>` : "";
  $("bench-results").innerHTML = `<table><tr><th>(N, D)</th><th>pass</th>${head}<th>functional</th><th>plain JS</th><th>speed-up, workspace</th><th>speed-up, functional</th>${tail}</tr>${rows
    .map((r) => `<tr><td>(${r.shape.join(", ")})</td><td>${r.op}</td><td>${ns(r.workspaceNs)}</td>${one ? `<td>${r.workspace1Ns === null ? "–" : ns(r.workspace1Ns)}</td>` : ""}<td>${ns(r.functionalNs)}</td><td>${ns(r.plainNs)}</td><td>${r.workspaceSpeedup.toFixed(1)}×</td><td>${r.functionalSpeedup.toFixed(1)}×</td>${one ? `<td>${r.threadsSpeedup === null ? "–" : `${r.threadsSpeedup.toFixed(2)}×`}</td>` : ""}</tr>`)
    .join("")}</table><p class="note">ns per element, median of 5 timings of about 20 ms each${one ? " (the workspace on threads and on one thread in turn)" : ""}. The workspace works in place in WebAssembly memory; the functional API copies its inputs in and its results out.${one ? ` On ${n} threads a batch of 512 KiB or more is split between this page's thread and its workers; smaller ones run on this thread alone.` : ""}</p>`;
}

async function bench() {
  busy(true);
  state.bench = null;
  const rows: BenchRow[] = [];
  try {
    for (const [n, d] of SHAPES) {
      $("bench-status").textContent = `measuring (${n}, ${d})…`;
      await sleep(0);
      await frame();
      const normal = () => Math.sqrt(-2 * Math.log(Math.random())) * Math.cos(2 * Math.PI * Math.random());
      const x = Float32Array.from({ length: n * d }, () => 3 + 2 * normal());
      const dout = Float32Array.from({ length: n * d }, normal);
      const gamma = new Float32Array(d).fill(1);
      const beta = new Float32Array(d);
      // The zero-copy path: the data live in the layer's workspace.
      const layer = new BatchNorm(d);
      const ws = layer.workspace(n);
      ws.x.set(x);
      ws.dout.set(dout);
      ws.forward();
      // The plain-JavaScript reference, with its buffers allocated once.
      const stats = () => [0, 1, 2, 3].map(() => new Float32Array(d)) as [Float32Array, Float32Array, Float32Array, Float32Array];
      const [mean, meanLo, variance, invStd] = stats();
      const runMean = new Float32Array(d);
      const runVar = new Float32Array(d);
      const out = new Float32Array(n * d);
      const dx = new Float32Array(n * d);
      const dgamma = new Float32Array(d);
      const dbeta = new Float32Array(d);
      reference.forwardTrain(x, n, d, 1, gamma, beta, 1e-5, 0.9, 1, runMean, runVar, out, mean, meanLo, variance, invStd);
      const { cache } = batchnormForward(x, gamma, beta, { mode: "train" });
      reference.backward(1, dout, x, n, d, 1, gamma, mean, meanLo, invStd, dx, dgamma, dbeta);
      // The workspace (on every thread the page has) against plain JavaScript, once.
      const errors = { forward: maxError(ws.forward(), out), backward: maxError(ws.backward(), dx) };
      // The same workspace on one thread, when the page has more: layers keep their engine.
      let layer1: BatchNorm | null = null;
      let ws1: ReturnType<BatchNorm["workspace"]> | null = null;
      if (threads() > 1) {
        await init({ threads: 1 });
        layer1 = new BatchNorm(d);
        ws1 = layer1.workspace(n);
        await init({ threads: state.threadsWanted });
        ws1.x.set(x);
        ws1.dout.set(dout);
        ws1.forward();
      }
      const elements = n * d;
      // The workspace on every thread and on one, timed in turn (what the threads change).
      const pair = (run: (w: typeof ws) => unknown) => (ws1 ? timeInTurn([() => run(ws), () => run(ws1!)], elements) : [time(() => run(ws), elements), null]);
      const [forwardNs, forward1Ns] = pair((w) => w.forward());
      const forward = {
        workspaceNs: forwardNs!,
        workspace1Ns: forward1Ns,
        functionalNs: time(() => batchnormForward(x, gamma, beta, { mode: "train" }), elements),
        plainNs: time(() => reference.forwardTrain(x, n, d, 1, gamma, beta, 1e-5, 0.9, 1, runMean, runVar, out, mean, meanLo, variance, invStd), elements),
      };
      await sleep(0);
      const [backwardNs, backward1Ns] = pair((w) => w.backward());
      const backward = {
        workspaceNs: backwardNs!,
        workspace1Ns: backward1Ns,
        functionalNs: time(() => batchnormBackward(dout, cache!), elements),
        plainNs: time(() => reference.backward(1, dout, x, n, d, 1, gamma, mean, meanLo, invStd, dx, dgamma, dbeta), elements),
      };
      ws.dispose();
      ws1?.dispose();
      layer1?.dispose();
      layer.dispose();
      for (const [op, t, workspaceError] of [["forward (train)", forward, errors.forward], ["backward", backward, errors.backward]] as const) {
        rows.push({
          shape: [n, d], op, ...t, workspaceSpeedup: t.plainNs / t.workspaceNs, functionalSpeedup: t.plainNs / t.functionalNs,
          threadsSpeedup: t.workspace1Ns && t.workspace1Ns / t.workspaceNs, workspaceError,
        });
      }
      drawBench(rows);
    }
    state.bench = rows;
    $("bench-status").textContent = `done: ${SHAPES.length} shapes, ${backend()} backend, ${threads()} thread${threads() > 1 ? "s" : ""}`;
  } finally {
    busy(false);
  }
}

$("train").addEventListener("click", () => void train());
$("stop").addEventListener("click", () => {
  state.stopped = true;
});
$("bench").addEventListener("click", () => void bench());
for (const input of [scaleInput, batchInput, epochsInput]) {
  input.addEventListener("change", () => {
    if (state.running) return;
    try {
      state.config = readConfig();
      drawCharts();
    } catch (e) {
      $("status").textContent = (e as Error).message;
    }
  });
}

state.config = readConfig();
drawCharts();
busy(true); // until the WebAssembly is compiled
await init({ threads: state.threadsWanted });
state.threads = threads();
$("backend").textContent = backend();
$("threads").textContent = String(state.threads);
$("threads-note").textContent = !state.isolated
  ? " (this page is not cross-origin isolated, so it has no shared memory: one thread)"
  : state.threads > 1
    ? ` (cross-origin isolated: this page's thread and ${state.threads - 1} worker${state.threads > 2 ? "s" : ""} on one shared memory)`
    : state.threadsWanted > 1 ? " (cross-origin isolated, but the workers did not start)" : " (one core)";
busy(false);
