// npm start: trains a deep fully connected network with and without batch normalization and
// shows the difference, as in the CS231n batch-norm study (its three experiments: with and
// without, the weight initialization scale, the batch size). See --help.
import { mkdirSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { backend, initSync } from "batchnorm-wasm";
import { type Dataset, rng, spirals } from "./data.js";
import { Adam, FullyConnectedNet, type Norm } from "./network.js";
import { htmlPage, lineChart, table } from "./report.js";

const USAGE = `usage: npm start [-- options]
  --epochs N   epochs of experiment 1 (default 20; 8 with --quick); experiment 2 runs
               ⌈N/3⌉ per weight scale (default 7; 8 with --quick), experiment 3
               ⌈N/2⌉ per batch size (default 10; 4 with --quick)
  --seed N     seed of the data and the weights (default 1)
  --quick      a smaller data set and fewer epochs and scales (a few seconds)
  --out DIR    where the report goes (default report)
  --help       this text`;

interface Options {
  epochs: number | null;
  seed: number;
  quick: boolean;
  out: string;
}

class UsageError extends Error {}

function parseArgs(argv: string[]): Options {
  const options: Options = { epochs: null, seed: 1, quick: false, out: "report" };
  const integer = (name: string, value: string | undefined, min: number) => {
    if (value === undefined || !/^\d+$/.test(value) || Number(value) < min) {
      throw new UsageError(`${name} needs a whole number ≥ ${min}, got ${value === undefined ? "nothing" : JSON.stringify(value)}`);
    }
    return Number(value);
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    switch (flag) {
      case "--epochs": options.epochs = integer("--epochs", value(), 1); break;
      case "--seed": options.seed = integer("--seed", value(), 0); break;
      case "--quick": options.quick = true; break;
      case "--out": {
        const v = value();
        if (!v) throw new UsageError("--out needs a directory");
        options.out = v;
        break;
      }
      case "--help": case "-h": console.log(USAGE); process.exit(0);
      default: throw new UsageError(`unknown option ${JSON.stringify(argv[i])}`);
    }
  }
  return options;
}

/** A progress bar on a terminal; on a pipe (CI), a line at every tenth. */
function progress(label: string, total: number) {
  const tty = process.stdout.isTTY;
  let lastTenth = -1;
  return (done: number, loss: number) => {
    const fraction = done / total;
    const text = `${label} [${"#".repeat(Math.round(fraction * 24)).padEnd(24, "-")}] ${String(done).padStart(String(total).length)}/${total} epochs  loss ${Number.isFinite(loss) ? loss.toFixed(3) : String(loss)}`;
    if (tty) process.stdout.write(`\r${text}${done === total ? "\n" : ""}`);
    else if (Math.floor(fraction * 10) > lastTenth || done === total) {
      lastTenth = Math.floor(fraction * 10);
      console.log(text);
    }
  };
}

interface History {
  loss: number[]; // mean minibatch loss per epoch
  iterationLoss: number[];
  trainAcc: number[];
  valAcc: number[];
}

function train(data: Dataset, opts: { norm: Norm; weightScale: number; epochs: number; seed: number; batchSize: number }, onEpoch: (epoch: number, loss: number) => void): History {
  const net = new FullyConnectedNet({
    inputDim: data.dims, hiddenDims: [100, 100, 100, 100, 100], classes: data.classes,
    weightScale: opts.weightScale, norm: opts.norm, seed: opts.seed,
  });
  const adam = new Adam(net.params, 1e-3);
  const { train: tr, val } = data;
  const dims = data.dims;
  const uniform = rng(opts.seed + 7);
  const order = Array.from({ length: tr.n }, (_, i) => i);
  const B = opts.batchSize;
  const xb = new Float32Array(B * dims);
  const yb = new Int32Array(B);
  const sample = Math.min(tr.n, 500);
  const history: History = { loss: [], iterationLoss: [], trainAcc: [], valAcc: [] };
  for (let epoch = 1; epoch <= opts.epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(uniform() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    let sum = 0;
    const batches = Math.floor(tr.n / B);
    for (let b = 0; b < batches; b++) {
      for (let r = 0; r < B; r++) {
        const src = order[b * B + r];
        xb.set(tr.x.subarray(src * dims, (src + 1) * dims), r * dims);
        yb[r] = tr.y[src];
      }
      const loss = net.lossAndGradients(xb, yb, B);
      adam.step();
      history.iterationLoss.push(loss);
      sum += loss;
    }
    history.loss.push(sum / batches);
    history.trainAcc.push(net.accuracy(tr.x.subarray(0, sample * dims), tr.y.subarray(0, sample), sample));
    history.valAcc.push(net.accuracy(val.x, val.y, val.n));
    onEpoch(epoch, sum / batches);
  }
  net.dispose();
  return history;
}

function main(): void {
  let options: Options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`npm start: ${e.message}\n${USAGE}`);
    process.exit(2);
  }
  const started = Date.now();
  initSync();
  const quick = options.quick;
  const epochs1 = options.epochs ?? (quick ? 8 : 20);
  const epochs2 = options.epochs ? Math.max(2, Math.ceil(options.epochs / 3)) : quick ? 8 : 7;
  const epochs3 = options.epochs ? Math.max(2, Math.ceil(options.epochs / 2)) : quick ? 4 : 10;
  const batchSizes = [5, 10, 50];
  const scales = quick ? [1e-4, 1e-3, 1e-2, 1e-1, 1] : Array.from({ length: 9 }, (_, i) => 10 ** (-4 + i / 2));
  const data = spirals({ seed: options.seed, classes: 5, perClass: quick ? 200 : 500, dims: 32, valFraction: 0.2 });
  const batchSize = 100;
  console.log(
    `batchnorm-wasm (${backend()} backend): 5 hidden layers of 100 units, Adam, batch ${batchSize}; ` +
      `${data.train.n} training and ${data.val.n} validation points, 5 spiral classes in ${data.dims} dimensions.\n`,
  );

  const scale1 = 1e-2;
  console.log(`Experiment 1: the same net with and without batch normalization (weight scale ${scale1})`);
  const exp1: Record<"withBn" | "withoutBn", History> = {} as never;
  for (const [key, batchNorm] of [["withBn", true], ["withoutBn", false]] as const) {
    const bar = progress(batchNorm ? "  with batch norm   " : "  without batch norm", epochs1);
    exp1[key] = train(data, { norm: batchNorm ? "batch" : "none", weightScale: scale1, epochs: epochs1, seed: options.seed, batchSize }, bar);
  }

  console.log(`\nExperiment 2: weight initialization scale, ${scales.length} scales × ${epochs2} epochs`);
  const exp2 = {
    scales,
    withBn: { bestValAcc: [] as number[], finalValAcc: [] as number[], finalLoss: [] as number[] },
    withoutBn: { bestValAcc: [] as number[], finalValAcc: [] as number[], finalLoss: [] as number[] },
  };
  for (const [key, batchNorm] of [["withBn", true], ["withoutBn", false]] as const) {
    const bar = progress(batchNorm ? "  with batch norm   " : "  without batch norm", scales.length * epochs2);
    scales.forEach((weightScale, s) => {
      const h = train(data, { norm: batchNorm ? "batch" : "none", weightScale, epochs: epochs2, seed: options.seed, batchSize }, (e, loss) => bar(s * epochs2 + e, loss));
      exp2[key].bestValAcc.push(Math.max(...h.valAcc));
      exp2[key].finalValAcc.push(h.valAcc[h.valAcc.length - 1]);
      exp2[key].finalLoss.push(h.loss[h.loss.length - 1]);
    });
  }

  // CS231n's third experiment: batch norm's statistics come from the batch, so with small
  // batches they are noisy, and so are the normalized activations the next layer sees;
  // layer norm's come from each row alone, whatever the batch size.
  console.log(`\nExperiment 3: batch size, ${batchSizes.join(", ")} × ${epochs3} epochs (weight scale ${scale1})`);
  const exp3 = { batchSizes, weightScale: scale1, withBn: [] as History[], withLn: [] as History[], withoutBn: [] as History[] };
  const exp3Runs = [["withBn", "batch", "  with batch norm   "], ["withLn", "layer", "  with layer norm   "], ["withoutBn", "none", "  without either    "]] as const;
  for (const [key, norm, label] of exp3Runs) {
    const bar = progress(label, batchSizes.length * epochs3);
    batchSizes.forEach((bs, s) => {
      exp3[key].push(train(data, { norm, weightScale: scale1, epochs: epochs3, seed: options.seed, batchSize: bs }, (e, loss) => bar(s * epochs3 + e, loss)));
    });
  }

  // Summary on the terminal.
  const last = (a: number[]) => a[a.length - 1];
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : String(v));
  const best = (a: number[]) => Math.min(...a.map((v) => (Number.isFinite(v) ? v : Infinity)));
  const top = (a: number[]) => Math.max(...a);
  const bestAt = (a: number[]) => `${pct(top(a))} (epoch ${a.indexOf(top(a)) + 1})`;
  console.log(`\nExperiment 1, ${epochs1} epochs     lowest loss  final loss   best val acc       final val acc  final train acc`);
  for (const [name, h] of [["with batch norm", exp1.withBn], ["without batch norm", exp1.withoutBn]] as const) {
    console.log(`  ${name.padEnd(22)} ${fmt(best(h.loss)).padStart(11)} ${fmt(last(h.loss)).padStart(11)}   ${bestAt(h.valAcc).padEnd(18)} ${pct(last(h.valAcc)).padStart(13)} ${pct(last(h.trainAcc)).padStart(16)}`);
  }
  console.log("\nExperiment 2: best / final val acc (final loss)");
  console.log(`  weight scale    with batch norm          without batch norm`);
  scales.forEach((s, i) => {
    const cell = (k: "withBn" | "withoutBn") => `${pct(exp2[k].bestValAcc[i])} / ${pct(exp2[k].finalValAcc[i])} (${fmt(exp2[k].finalLoss[i])})`.padEnd(24);
    console.log(`  ${s.toExponential(1).padEnd(14)}  ${cell("withBn")} ${cell("withoutBn")}`);
  });
  console.log("\nExperiment 3: best / final val acc (final loss)");
  console.log(`  batch size      with batch norm          with layer norm          without either`);
  batchSizes.forEach((bs, i) => {
    const cell = (h: History) => `${pct(top(h.valAcc))} / ${pct(last(h.valAcc))} (${fmt(last(h.loss))})`.padEnd(24);
    console.log(`  ${String(bs).padEnd(14)}  ${cell(exp3.withBn[i])} ${cell(exp3.withLn[i])} ${cell(exp3.withoutBn[i])}`);
  });

  // Report.
  const out = resolve(options.out);
  mkdirSync(out, { recursive: true });
  const seconds = (Date.now() - started) / 1000;
  const summary = { seed: options.seed, quick, batchSize, epochs: { experiment1: epochs1, experiment2: epochs2, experiment3: epochs3 }, backend: backend(), seconds, experiment1: { weightScale: scale1, ...exp1 }, experiment2: exp2, experiment3: exp3 };
  writeFileSync(`${out}/summary.json`, JSON.stringify(summary, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 1) + "\n");
  const BN = "#1b6ef3";
  const PLAIN = "#db4437";
  const epochsAxis = (a: number[]) => a.map((v, i) => [i + 1, v] as [number, number]);
  const charts1 = [
    lineChart("Training loss per iteration", "iteration", "loss", [
      { name: "with batch norm", color: BN, points: exp1.withBn.iterationLoss.map((v, i) => [i + 1, v]) },
      { name: "without batch norm", color: PLAIN, points: exp1.withoutBn.iterationLoss.map((v, i) => [i + 1, v]) },
    ], { yMin: 0, integerX: true }),
    lineChart("Accuracy per epoch", "epoch", "accuracy", [
      { name: "train, batch norm", color: BN, points: epochsAxis(exp1.withBn.trainAcc) },
      { name: "val, batch norm", color: "#7aa9f7", points: epochsAxis(exp1.withBn.valAcc) },
      { name: "train, no batch norm", color: PLAIN, points: epochsAxis(exp1.withoutBn.trainAcc) },
      { name: "val, no batch norm", color: "#f19b8f", points: epochsAxis(exp1.withoutBn.valAcc) },
    ], { yMin: 0, yMax: 1, xMin: 0, integerX: true }),
  ];
  const charts2 = [
    lineChart("Best validation accuracy vs weight scale", "weight initialization scale", "accuracy", [
      { name: "with batch norm", color: BN, points: scales.map((s, i) => [s, exp2.withBn.bestValAcc[i]]) },
      { name: "without batch norm", color: PLAIN, points: scales.map((s, i) => [s, exp2.withoutBn.bestValAcc[i]]) },
    ], { logX: true, yMin: 0, yMax: 1 }),
    lineChart("Final training loss vs weight scale", "weight initialization scale", "loss", [
      { name: "with batch norm", color: BN, points: scales.map((s, i) => [s, exp2.withBn.finalLoss[i]]) },
      { name: "without batch norm", color: PLAIN, points: scales.map((s, i) => [s, exp2.withoutBn.finalLoss[i]]) },
    ], { logX: true, logY: true }),
  ];
  // Experiment 3: a shade per batch size; blue batch norm, green layer norm, red (dashed) neither.
  const shades = { withBn: ["#0b3d91", "#1b6ef3", "#8db5fa"], withLn: ["#0b6b2e", "#1e9e4a", "#8fd3a5"], withoutBn: ["#8e1b10", "#db4437", "#f2a39a"] };
  const names = { withBn: "BN", withLn: "LN", withoutBn: "neither" };
  const exp3Series = (pick: (h: History) => number[]) => (["withBn", "withLn", "withoutBn"] as const).flatMap((key) =>
    batchSizes.map((bs, i) => ({ name: `${names[key]}, batch ${bs}`, color: shades[key][i], dashed: key === "withoutBn", points: epochsAxis(pick(exp3[key][i])) })));
  const charts3 = [
    lineChart("Validation accuracy per epoch, by batch size", "epoch", "accuracy", exp3Series((h) => h.valAcc), { yMin: 0, yMax: 1, xMin: 0, integerX: true }),
    lineChart("Training loss per epoch, by batch size", "epoch", "loss", exp3Series((h) => h.loss), { xMin: 0, integerX: true, logY: true }),
  ];
  writeFileSync(`${out}/loss.svg`, charts1[0] + "\n");
  writeFileSync(`${out}/weight-scale.svg`, charts2[0] + "\n");
  writeFileSync(`${out}/batch-size.svg`, charts3[0] + "\n");
  const html = htmlPage("Batch normalization: deep nets with and without it", [
    {
      heading: "Setup",
      body: `<p>A fully connected net (5 hidden layers of 100 units, affine → batch norm → ReLU, softmax loss, Adam with learning rate 1e-3, batch ${batchSize}) on ${data.train.n} training and ${data.val.n} validation points: 5 interleaved spirals embedded in ${data.dims} dimensions with noise (seed ${options.seed}). Batch normalization runs in batchnorm-wasm (${backend()} backend). ${seconds.toFixed(0)} s in all.</p>`,
    },
    {
      heading: `Experiment 1: with and without batch normalization (weight scale ${scale1}, ${epochs1} epochs)`,
      body: `<div class="charts">${charts1.join("")}</div>` + table(["", "lowest epoch loss", "final epoch loss", "best val acc", "final val acc", "best train acc", "final train acc"],
        ([["with batch norm", exp1.withBn], ["without batch norm", exp1.withoutBn]] as const).map(([name, h]) =>
          [name, fmt(best(h.loss)), fmt(last(h.loss)), bestAt(h.valAcc), pct(last(h.valAcc)), bestAt(h.trainAcc), pct(last(h.trainAcc))]),
      ) + "<p>Loss is the mean minibatch loss of an epoch, in train mode. A batch-normalized net's train-mode loss carries the noise of its batch statistics. Accuracy is measured in eval mode after each epoch (training accuracy on up to 500 training points); the best epoch can be well above the last, since Adam's steps make some epochs jump.</p>",
    },
    {
      heading: `Experiment 2: sensitivity to the weight initialization scale (${epochs2} epochs each)`,
      body: `<div class="charts">${charts2.join("")}</div>` + table(
        ["weight scale", "best val acc, batch norm", "final val acc, batch norm", "final loss, batch norm", "best val acc, no batch norm", "final val acc, no batch norm", "final loss, no batch norm"],
        scales.map((s, i) => [
          s.toExponential(1),
          pct(exp2.withBn.bestValAcc[i]), pct(exp2.withBn.finalValAcc[i]), fmt(exp2.withBn.finalLoss[i]),
          pct(exp2.withoutBn.bestValAcc[i]), pct(exp2.withoutBn.finalValAcc[i]), fmt(exp2.withoutBn.finalLoss[i]),
        ]),
      ),
    },
    {
      heading: `Experiment 3: batch size (${batchSizes.join(", ")}; weight scale ${scale1}, ${epochs3} epochs each)`,
      body: `<div class="charts">${charts3.join("")}</div>` + table(
        ["batch size", ...(["batch norm", "layer norm", "neither"].flatMap((n) => [`best val acc, ${n}`, `final val acc, ${n}`, `final loss, ${n}`]))],
        batchSizes.map((bs, i) => [
          bs,
          ...(["withBn", "withLn", "withoutBn"] as const).flatMap((k) => [pct(top(exp3[k][i].valAcc)), pct(last(exp3[k][i].valAcc)), fmt(last(exp3[k][i].loss))]),
        ]),
      ) + "<p>Batch normalization normalizes with the mean and variance of the batch. With 5 rows those estimates are noisy, so every layer sees differently scaled activations from step to step, and the eval-mode running averages are built from noisy estimates; with 50 rows they are close to the data's. Layer normalization (the package's LayerNorm, then a ReLU) normalizes each row with its own 100 values, the same in train and eval mode, so the batch size does not enter its statistics. The same epochs give the small-batch runs ten times the updates, which is why the nets learn faster per epoch with small batches.</p>",
    },
  ]);
  writeFileSync(`${out}/index.html`, html);
  console.log(`\nReport: ${out}/index.html (charts also in loss.svg, weight-scale.svg and batch-size.svg), ${seconds.toFixed(0)} s`);
}

main();
