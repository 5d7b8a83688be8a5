// batchnorm-wasm/tfjs against the stock tf.layers.batchNormalization (an independent
// implementation: tf.moments, tf.batchNorm and tfjs autodiff), on tfjs-cpu and tfjs-wasm.
//
// The stock layer is only right for a channels-last axis of rank ≤ 4: it refuses rank 5, and
// its other axes give wrong outputs on tfjs-cpu (its batchNorm kernel broadcasts statistics
// over the last axis only) and a failing gradient. So the reference for those cases is the
// stock layer on the same data moved to channels last and flattened to (M, C) — the same
// statistics, per channel over every other axis.
import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { BatchNormalization, batchNormalization, kernelBackends, useForStockLayers, wasmDirectReads } from "../src/tfjs.js";
import { expectClose, expectRelClose, randn } from "./helpers.js";

type Layer = tf.layers.Layer;
const isNode = typeof process !== "undefined" && !!process.versions?.node;
// tfjs-wasm finds its .wasm files next to its script in Node; the browser tests fetch them from Vite's server.
if (!isNode) setWasmPaths("/node_modules/@tensorflow/tfjs-backend-wasm/dist/");

/** float32 tolerances between two float32 implementations: outputs absolute, gradients relative to their scale. */
const OUT_ABS = 1e-4;
const GRAD_REL = 1e-4;

function tensor(seed: number, shape: number[], loc = 0, scale = 1) {
  return tf.tensor(Float32Array.from(randn(seed, shape.reduce((a, b) => a * b, 1), loc, scale)), shape);
}

/** Channel axis k of rank r, counted from 0. */
const axisOf = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

/** Which stock form is the reference: the layer itself, or on (M, C) (see the file's comment). */
function stockDirect(rank: number, axis: number) {
  return rank <= 4 && axisOf(axis, rank) === rank - 1;
}

/** Layers between input and the stock BN that make the data (M, C), and back, for a per-sample shape. */
function stockAround(sampleShape: number[], axis: number) {
  const rank = sampleShape.length + 1;
  const k = axisOf(axis, rank) - 1;  // in the sample's axes
  const order = [...sampleShape.keys()].filter((i) => i !== k).concat(k);  // channel last
  const permuted = order.map((i) => sampleShape[i]);
  const C = sampleShape[k];
  const before: Layer[] = [];
  const after: Layer[] = [];
  if (k !== sampleShape.length - 1) before.push(tf.layers.permute({ dims: order.map((i) => i + 1) }));
  before.push(tf.layers.reshape({ targetShape: [permuted.length === 1 ? 1 : permuted.slice(0, -1).reduce((a, b) => a * b, 1), C] }));
  after.push(tf.layers.reshape({ targetShape: permuted }));
  if (k !== sampleShape.length - 1) {
    const inverse = order.map((_, i) => order.indexOf(i) + 1);
    after.push(tf.layers.permute({ dims: inverse }));
  }
  return { before, after };
}

/** A model: [input] → BN → flatten → dense(3), with the BN ours or the stock one (wrapped as needed). */
function model(kind: "ours" | "stock", sampleShape: number[], config: Record<string, unknown>) {
  const axis = (config.axis as number | undefined) ?? -1;
  const rank = sampleShape.length + 1;
  const wrap = kind === "stock" && !stockDirect(rank, axis);
  const bn = kind === "ours" ? batchNormalization(config) : tf.layers.batchNormalization({ ...config, axis: wrap ? -1 : axis });
  const around = wrap ? stockAround(sampleShape, axis) : { before: [], after: [] };
  const input = tf.input({ shape: sampleShape });
  let h: tf.SymbolicTensor = input;
  for (const l of around.before) h = l.apply(h) as tf.SymbolicTensor;
  h = bn.apply(h) as tf.SymbolicTensor;
  for (const l of around.after) h = l.apply(h) as tf.SymbolicTensor;
  // Flatten (rank ≥ 3 only) marks where the BN part ends (see bnOut).
  h = (sampleShape.length > 1 ? tf.layers.flatten() : tf.layers.activation({ activation: "linear" })).apply(h) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 3, kernelInitializer: "zeros" }).apply(h) as tf.SymbolicTensor;
  return { model: tf.model({ inputs: input, outputs: out }), bn };
}

/** Gives both BN layers the same random gamma, beta and moving statistics (and both dense layers the same kernel). */
function sameWeights(seed: number, a: tf.LayersModel, b: tf.LayersModel) {
  const wa = a.getWeights();
  const values = wa.map((w, i) => {
    const name = a.weights[i].originalName;
    if (name.endsWith("moving_variance")) return tf.abs(tensor(seed + i, w.shape, 1, 0.5)).add(0.1);
    if (name.endsWith("gamma")) return tensor(seed + i, w.shape, 1, 0.3);
    return tensor(seed + i, w.shape, 0, 0.3);
  });
  a.setWeights(values);
  b.setWeights(values);
  tf.dispose(values);
}

/** The BN layer's weights by their names. */
function bnWeights(bn: Layer) {
  const out: Record<string, Float32Array> = {};
  for (const w of bn.weights) out[w.originalName.split("/").pop()!] = w.read().dataSync() as Float32Array;
  return out;
}

/** The tf.Variable behind a trainable weight of the layer (for tf.variableGrads). */
function variable(bn: Layer, name: string): tf.Variable {
  return bn.trainableWeights.find((v) => v.originalName.endsWith(name))!.read() as tf.Variable;
}

const cases: { name: string; sample: number[]; axis?: number }[] = [
  { name: "rank 2, axis -1", sample: [7] },
  { name: "rank 2, axis 1", sample: [5], axis: 1 },
  { name: "rank 3, axis -1", sample: [4, 6] },
  { name: "rank 3, axis 1", sample: [3, 5], axis: 1 },
  { name: "rank 4, axis -1 (NHWC)", sample: [3, 4, 5] },
  { name: "rank 4, axis 1 (NCHW)", sample: [5, 3, 4], axis: 1 },
  { name: "rank 5, axis -1", sample: [2, 3, 2, 4] },
  { name: "rank 5, axis 1", sample: [4, 2, 3, 2], axis: 1 },
];

describe.each(["cpu", "wasm"])("tfjs-%s", (backendName) => {
  let previous = "";
  beforeAll(async () => {
    previous = tf.getBackend();
    expect(await tf.setBackend(backendName)).toBe(true);
    await tf.ready();
  });
  afterAll(async () => {
    if (previous) await tf.setBackend(previous);
  });

  test("the backend is the one under test, and the layer uses the kernels there", () => {
    expect(tf.getBackend()).toBe(backendName);
    expect(kernelBackends.has(backendName)).toBe(true);
  });

  describe.each(cases)("$name", ({ sample, axis }) => {
    const config = { axis, momentum: 0.8, epsilon: 1e-3 };
    const batch = 6;

    test("training forward, gradients for x, gamma, beta (tf.grad, tf.variableGrads) and moving statistics", () => {
      const ours = model("ours", sample, config);
      const stock = model("stock", sample, config);
      sameWeights(11, ours.model, stock.model);
      const initial = bnWeights(ours.bn);
      const x = tensor(3, [batch, ...sample], 2, 3);
      const w = tensor(4, [batch, ...sample]);
      // The BN output alone: the stock path runs around its BN the permutes/reshapes of the model.
      const bnOut = (m: tf.LayersModel, xs: tf.Tensor) => {
        const flatten = m.layers.find((l) => ["Flatten", "Activation"].includes(l.getClassName()))!;
        const sub = tf.model({ inputs: m.inputs, outputs: flatten.input as tf.SymbolicTensor });
        return sub.apply(xs, { training: true }) as tf.Tensor;
      };
      const yO = bnOut(ours.model, x);
      const yS = bnOut(stock.model, x);
      expect(yO.shape).toEqual(x.shape);
      expectClose(yO.dataSync(), yS.dataSync(), OUT_ABS, "out");
      // A train-mode forward moved the moving statistics, the same way.
      const [bo, bs] = [bnWeights(ours.bn), bnWeights(stock.bn)];
      expectClose(bo.moving_mean, bs.moving_mean, 1e-5, "moving_mean");
      expectClose(bo.moving_variance, bs.moving_variance, 1e-5, "moving_variance");
      // The initial moving statistics are not the batch's: the comparison above can fail.
      expect(Math.abs(bo.moving_mean[0] - initial.moving_mean[0])).toBeGreaterThan(1e-3);

      const loss = (m: tf.LayersModel) => (xs: tf.Tensor) => tf.sum(tf.mul(bnOut(m, xs), w)) as tf.Scalar;
      const dxO = tf.grad(loss(ours.model))(x);
      const dxS = tf.grad(loss(stock.model))(x);
      expectRelClose(dxO.dataSync(), dxS.dataSync(), GRAD_REL, "dx");
      expect(tf.max(tf.abs(dxS)).dataSync()[0]).toBeGreaterThan(1e-3);
      for (const name of ["gamma", "beta"]) {
        const [vO, vS] = [variable(ours.bn, name), variable(stock.bn, name)];
        const gO = tf.variableGrads(() => loss(ours.model)(x), [vO]).grads[vO.name];
        const gS = tf.variableGrads(() => loss(stock.model)(x), [vS]).grads[vS.name];
        expectRelClose(gO.dataSync(), gS.dataSync(), GRAD_REL, `d${name}`);
      }
      tf.dispose([x, w, yO, yS, dxO, dxS]);
    });

    test("model.fit: weights and moving statistics after 4 steps, then inference", async () => {
      const ours = model("ours", sample, config);
      const stock = model("stock", sample, config);
      sameWeights(21, ours.model, stock.model);
      const x = tensor(5, [batch, ...sample], -1, 2);
      const y = tensor(6, [batch, 3]);
      for (const { model: m } of [ours, stock]) {
        m.compile({ optimizer: tf.train.sgd(0.1), loss: "meanSquaredError" });
        await m.fit(x, y, { epochs: 4, batchSize: batch, shuffle: false, verbose: 0 });
      }
      const [bo, bs] = [bnWeights(ours.bn), bnWeights(stock.bn)];
      for (const name of ["gamma", "beta", "moving_mean", "moving_variance"]) expectRelClose(bo[name], bs[name], GRAD_REL, name);
      // gamma and beta did move (the dense kernel was zero only for the first step).
      expect(Math.max(...bs.beta.map(Math.abs))).toBeGreaterThan(0);
      const kO = ours.model.layers.at(-1)!.getWeights()[0].dataSync();
      const kS = stock.model.layers.at(-1)!.getWeights()[0].dataSync();
      expectRelClose(kO, kS, GRAD_REL, "dense kernel");
      const xt = tensor(7, [3, ...sample], 0.5, 1.5);
      const pO = ours.model.predict(xt) as tf.Tensor;
      const pS = stock.model.predict(xt) as tf.Tensor;
      expectClose(pO.dataSync(), pS.dataSync(), OUT_ABS, "predict");
      // Inference does not move the moving statistics.
      expect(bnWeights(ours.bn).moving_mean).toEqual(bo.moving_mean);
      tf.dispose([x, y, xt, pO, pS]);
    });
  });

  test("inference output equals the stock layer's with trained statistics; its gradients too", () => {
    const ours = model("ours", [3, 4, 5], {});
    const stock = model("stock", [3, 4, 5], {});
    sameWeights(31, ours.model, stock.model);
    const x = tensor(8, [4, 3, 4, 5], 1, 2);
    const f = (bn: Layer) => (xs: tf.Tensor) => tf.sum(tf.square(bn.apply(xs, { training: false }) as tf.Tensor)) as tf.Scalar;
    const yO = ours.bn.apply(x) as tf.Tensor;
    const yS = stock.bn.apply(x) as tf.Tensor;
    expectClose(yO.dataSync(), yS.dataSync(), OUT_ABS, "out");
    expectRelClose(tf.grad(f(ours.bn))(x).dataSync(), tf.grad(f(stock.bn))(x).dataSync(), GRAD_REL, "dx");
    // The input an intermediate of the differentiated function (disposed by its tidy before the backward).
    for (const name of ["gamma", "beta"]) {
      const [vO, vS] = [variable(ours.bn, name), variable(stock.bn, name)];
      const gO = tf.variableGrads(() => f(ours.bn)(tf.mul(x, 1.5)), [vO]).grads[vO.name];
      const gS = tf.variableGrads(() => f(stock.bn)(tf.mul(x, 1.5)), [vS]).grads[vS.name];
      expectRelClose(gO.dataSync(), gS.dataSync(), GRAD_REL, `d${name}`);
    }
    tf.dispose([x, yO, yS]);
  });

  test("trainable: false freezes gamma and beta under model.fit; moving statistics still follow fit, as the stock layer's", async () => {
    const config = { trainable: false, momentum: 0.5 };
    const ours = model("ours", [4], config);
    const stock = model("stock", [4], config);
    sameWeights(41, ours.model, stock.model);
    const before = bnWeights(ours.bn);
    expect(ours.bn.trainableWeights).toHaveLength(0);
    expect(ours.bn.nonTrainableWeights).toHaveLength(4);
    const x = tensor(9, [8, 4], 3, 2);
    const y = tensor(10, [8, 3]);
    for (const { model: m } of [ours, stock]) {
      m.compile({ optimizer: tf.train.sgd(0.5), loss: "meanSquaredError" });
      await m.fit(x, y, { epochs: 3, batchSize: 8, verbose: 0 });
    }
    const [bo, bs] = [bnWeights(ours.bn), bnWeights(stock.bn)];
    expect(bo.gamma).toEqual(before.gamma);
    expect(bo.beta).toEqual(before.beta);
    expectRelClose(bo.moving_mean, bs.moving_mean, GRAD_REL, "moving_mean");
    expectRelClose(bo.moving_variance, bs.moving_variance, GRAD_REL, "moving_variance");
    expect(Math.abs(bo.moving_mean[0] - before.moving_mean[0])).toBeGreaterThan(1e-3);
    tf.dispose([x, y]);
  });

  test("center: false and scale: false: no beta or gamma weight, in training too (the stock layer throws there)", () => {
    const layer = batchNormalization({ center: false, scale: false });
    const x = tensor(12, [10, 3], 4, 2);
    const y = layer.apply(x, { training: true }) as tf.Tensor;
    expect(layer.weights.map((w) => w.originalName.split("/").pop())).toEqual(["moving_mean", "moving_variance"]);
    // Reference: the stock layer with gamma 1 and beta 0.
    const stock = tf.layers.batchNormalization();
    const yS = stock.apply(x, { training: true }) as tf.Tensor;
    expectClose(y.dataSync(), yS.dataSync(), OUT_ABS, "out");
    const dx = tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(layer.apply(xs, { training: true }) as tf.Tensor, xs)) as tf.Scalar)(x);
    const dxS = tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(stock.apply(xs, { training: true }) as tf.Tensor, xs)) as tf.Scalar)(x);
    expectRelClose(dx.dataSync(), dxS.dataSync(), GRAD_REL, "dx");
    tf.dispose([x, y, yS, dx, dxS]);
  });

  test("no tensor leaks: tf.memory().numTensors is flat over 100 training steps (and 100 inference calls)", () => {
    const ours = model("ours", [4, 4, 3], {});
    const opt = tf.train.sgd(0.01);
    const x = tensor(13, [8, 4, 4, 3]);
    const y = tensor(14, [8, 3]);
    const step = () => opt.minimize(() => tf.losses.meanSquaredError(y, ours.model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar);
    step();
    const start = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) step();
    expect(tf.memory().numTensors).toBe(start);
    for (let i = 0; i < 100; i++) tf.dispose(ours.model.predict(x) as tf.Tensor);
    expect(tf.memory().numTensors).toBe(start);
    tf.dispose([x, y]);
    opt.dispose();
  });

  test("save and load in memory (tf.io.withSaveHandler / fromMemory) under its className", async () => {
    const ours = model("ours", [3, 2, 4], { axis: 1, epsilon: 0.01, momentum: 0.9, gammaRegularizer: "l1l2" });
    sameWeights(51, ours.model, ours.model);
    const artifacts = await save(ours.model);
    expect(JSON.stringify(artifacts.modelTopology)).toContain('"class_name":"BatchNormalizationWasm"');
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    const bn = loaded.layers.find((l) => l instanceof BatchNormalization)!;
    expect(bn).toBeDefined();
    expect(bn.getConfig()).toEqual(ours.bn.getConfig());
    expect(bn.getConfig()).toMatchObject({ axis: 1, epsilon: 0.01, momentum: 0.9 });
    const x = tensor(15, [5, 3, 2, 4], 1, 2);
    const [a, b] = [ours.model.predict(x) as tf.Tensor, loaded.predict(x) as tf.Tensor];
    expect(b.dataSync()).toEqual(a.dataSync());
    expect(bnWeights(bn)).toEqual(bnWeights(ours.bn));
    tf.dispose([x, a, b]);
  });

  test("a model saved with the stock layer loads with it, unless useForStockLayers() (then undone)", async () => {
    const stock = model("stock", [6], { momentum: 0.7 });
    sameWeights(61, stock.model, stock.model);
    const artifacts = await save(stock.model);
    const plain = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    expect(plain.layers.some((l) => l instanceof BatchNormalization)).toBe(false);
    expect(plain.layers.some((l) => l.getClassName() === "BatchNormalization")).toBe(true);

    const restore = useForStockLayers();
    let swapped: tf.LayersModel;
    try {
      swapped = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    } finally {
      restore();
    }
    const bn = swapped.layers.find((l) => l instanceof BatchNormalization)!;
    expect(bn).toBeDefined();
    // It saves under the stock name again, so plain tfjs can still load what it writes.
    expect(bn.getClassName()).toBe("BatchNormalization");
    const x = tensor(16, [9, 6], 2, 1);
    const y = tensor(17, [9, 3]);
    const [a, b] = [stock.model.predict(x) as tf.Tensor, swapped.predict(x) as tf.Tensor];
    expectClose(b.dataSync(), a.dataSync(), OUT_ABS, "predict");
    // And it trains like the stock layer.
    for (const m of [stock.model, swapped]) {
      m.compile({ optimizer: tf.train.sgd(0.1), loss: "meanSquaredError" });
      await m.fit(x, y, { epochs: 2, batchSize: 9, verbose: 0 });
    }
    const bs = bnWeights(stock.bn);
    const bo = bnWeights(bn);
    for (const name of ["gamma", "beta", "moving_mean", "moving_variance"]) expectRelClose(bo[name], bs[name], GRAD_REL, name);
    const again = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    expect(again.layers.some((l) => l instanceof BatchNormalization)).toBe(false);
    tf.dispose([x, y, a, b]);
  });

  test(`reads tensors ${backendName === "wasm" ? "through views of tfjs-wasm's memory, or dataSync() when turned off" : "with dataSync()"}: same results`, () => {
    const run = (direct: boolean) => {
      wasmDirectReads.enabled = direct;
      try {
        const layer = batchNormalization({ axis: 1 });
        const x = tensor(19, [5, 3, 4], 1, 2);
        const spy = vi.spyOn(x, "dataSync");
        const [y, dx] = [layer.apply(x, { training: true }) as tf.Tensor, tf.grad((xs: tf.Tensor) => tf.sum(tf.square(layer.apply(xs, { training: true }) as tf.Tensor)) as tf.Scalar)(x)];
        const calls = spy.mock.calls.length;
        const result = { y: y.dataSync().slice(), dx: dx.dataSync().slice(), mv: bnWeights(layer).moving_variance, calls };
        tf.dispose([x, y, dx]);
        return result;
      } finally {
        wasmDirectReads.enabled = true;
      }
    };
    const [direct, copied] = [run(true), run(false)];
    expect(direct.calls).toBe(backendName === "wasm" ? 0 : 2);
    expect(copied.calls).toBe(2);
    expect(direct.y).toEqual(copied.y);
    expect(direct.dx).toEqual(copied.dx);
    expect(direct.mv).toEqual(copied.mv);
  });

  test("off the kernel backends the layer runs the stock math in tf ops, with the same results", () => {
    const x = tensor(18, [4, 3, 2, 2, 5], 1, 2);
    const ours = batchNormalization({ axis: 1, momentum: 0.6 });
    const viaKernels = batchNormalization({ axis: 1, momentum: 0.6 });
    const loss = (l: Layer) => (xs: tf.Tensor) => tf.sum(tf.mul(l.apply(xs, { training: true }) as tf.Tensor, xs)) as tf.Scalar;
    const dxK = tf.grad(loss(viaKernels))(x);
    const yK = viaKernels.apply(x, { training: true }) as tf.Tensor;
    kernelBackends.delete(backendName);
    let dxF: tf.Tensor;
    let yF: tf.Tensor;
    try {
      dxF = tf.grad(loss(ours))(x);
      yF = ours.apply(x, { training: true }) as tf.Tensor;
    } finally {
      kernelBackends.add(backendName);
    }
    expectClose(yF.dataSync(), yK.dataSync(), OUT_ABS, "out");
    expectRelClose(dxF.dataSync(), dxK.dataSync(), GRAD_REL, "dx");
    expectClose(bnWeights(ours).moving_variance, bnWeights(viaKernels).moving_variance, 1e-5, "moving_variance");
    tf.dispose([x, dxK, yK, dxF, yF]);
  });
});

async function save(m: tf.LayersModel): Promise<tf.io.ModelArtifacts> {
  let artifacts: tf.io.ModelArtifacts | null = null;
  await m.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } };
  }));
  return artifacts!;
}

describe("config and inputs", () => {
  test("importing does not replace the stock layer", () => {
    const stock = tf.layers.batchNormalization();
    expect(stock).not.toBeInstanceOf(BatchNormalization);
    expect(stock.getClassName()).toBe("BatchNormalization");
    const ours = batchNormalization();
    expect(ours).toBeInstanceOf(tf.layers.Layer);
    expect(ours.getClassName()).toBe("BatchNormalizationWasm");
  });

  test("defaults are the stock layer's: axis -1, momentum 0.99, epsilon 1e-3, center and scale", () => {
    const a = batchNormalization().getConfig();
    const b = tf.layers.batchNormalization().getConfig();
    delete a.name;
    delete b.name;
    expect(a).toEqual(b);
    expect(a).toMatchObject({ axis: -1, momentum: 0.99, epsilon: 1e-3, center: true, scale: true });
  });

  test("bad configs throw TypeError or RangeError naming the option", () => {
    expect(() => batchNormalization("x" as never)).toThrow(TypeError);
    expect(() => batchNormalization({ axis: 1.5 })).toThrow(/axis must be an integer/);
    expect(() => batchNormalization({ momentum: 1.5 })).toThrow(RangeError);
    expect(() => batchNormalization({ momentum: "0.9" as never })).toThrow(/momentum must be a number in \[0, 1\], got "0.9"/);
    expect(() => batchNormalization({ epsilon: -1 })).toThrow(RangeError);
    expect(() => batchNormalization({ center: 1 as never })).toThrow(/center must be true or false/);
    expect(() => batchNormalization({ dtype: "int32" })).toThrow(/dtype must be 'float32'/);
  });

  test("inputs of rank 1 and axes out of range are refused with RangeError", () => {
    expect(() => batchNormalization().apply(tf.ones([3]))).toThrow(RangeError);
    expect(() => batchNormalization({ axis: 3 }).apply(tf.ones([2, 3]))).toThrow(/axis 3 is out of range for input of rank 2/);
    expect(() => batchNormalization({ axis: -3 }).apply(tf.ones([2, 3]))).toThrow(RangeError);
  });
});
