// The implementations the benchmarks compare. Each `setup(op, data)` prepares everything
// outside the timing (instantiation, tensors, workspaces) and returns
// { run, result, teardown }: `run` is what is timed, `result` computes the output once for the
// check against the reference. data.geometry is the kernels' view (n, d, S) of data.shape in
// data.layout (see src/shape.ts).
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import {
  BatchNorm, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync, reference,
  spatialBatchnormBackward, spatialBatchnormForward,
} from "../dist/index.js";

const EPS = 1e-5;

/** Idiomatic plain JavaScript: the package's reference loops, allocating outputs per call. */
export const plainJs = {
  forwardTrain({ n, d, S }, x, gamma, beta, bnParam) {
    const out = new Float32Array(x.length);
    const stats = [0, 1, 2, 3].map(() => new Float32Array(d));
    bnParam.runningMean ??= new Float32Array(d);
    bnParam.runningVar ??= new Float32Array(d);
    reference.forwardTrain(x, n, d, S, gamma, beta, EPS, 0.9, 1, bnParam.runningMean, bnParam.runningVar, out, ...stats);
    return { out, cache: { x, gamma, mean: stats[0], meanLo: stats[1], invStd: stats[3] } };
  },
  forwardTest({ n, d, S }, x, gamma, beta, bnParam) {
    const out = new Float32Array(x.length);
    reference.forwardTest(x, n, d, S, gamma, beta, EPS, bnParam.runningMean, bnParam.runningVar, out);
    return out;
  },
  backward({ n, d, S }, form, dout, cache) {
    const { x, gamma, mean, meanLo, invStd } = cache;
    const dx = new Float32Array(x.length);
    const dgamma = new Float32Array(d);
    const dbeta = new Float32Array(d);
    reference.backward(form, dout, x, n, d, S, gamma, mean, meanLo, invStd, dx, dgamma, dbeta);
    return { dx, dgamma, dbeta };
  },
};

const FORMS = { backward: 1, "backward-graph": 0 };

function zeroCopy(backend, threads = 1) {
  return {
    name: `${backend} zero-copy`,
    kind: "package",
    // The same on `count` threads (bench/run.mjs's threads column).
    withThreads: (count) => zeroCopy(backend, count),
    setup(op, { shape, layout, x, gamma, beta, dout, runningMean, runningVar }) {
      initSync({ backend, threads });
      const layer = new BatchNorm(shape[1], { layout });
      layer.gamma.set(gamma);
      layer.beta.set(beta);
      const ws = layer.workspace(shape);
      ws.x.set(x);
      ws.dout.set(dout);
      ws.forward();
      if (op === "test") {
        layer.eval();
        layer.runningMean.set(runningMean);
        layer.runningVar.set(runningVar);
      }
      const form = op === "backward-graph" ? "graph" : "compact";
      const run = op.startsWith("backward") ? () => ws.backward({ form }) : () => ws.forward();
      return { run, result: () => run().slice(), teardown: () => ws.dispose() };
    },
  };
}

function functional(backend) {
  return {
    name: `${backend} functional`,
    kind: "package",
    setup(op, { shape, layout, x, gamma, beta, dout, runningMean, runningVar }) {
      initSync({ backend });
      const spatial = shape.length > 2;
      const fwd = spatial
        ? (param) => spatialBatchnormForward(x, gamma, beta, param, shape, layout)
        : (param) => batchnormForward(x, gamma, beta, param);
      const bnParam = { mode: "train" };
      const { cache } = fwd(bnParam);
      if (op === "train") return { run: () => fwd(bnParam), result: () => fwd(bnParam).out };
      if (op === "test") {
        const testParam = { mode: "test", runningMean, runningVar };
        return { run: () => fwd(testParam), result: () => fwd(testParam).out };
      }
      const backward = spatial ? spatialBatchnormBackward : op === "backward" ? batchnormBackwardAlt : batchnormBackward;
      return { run: () => backward(dout, cache), result: () => backward(dout, cache).dx };
    },
  };
}

/**
 * The package's functional API with outputs given (`{ out }`, `{ dx, dgamma, dbeta }`): no
 * N·D array allocated per call.
 */
function functionalOutputs(backend) {
  return {
    name: `${backend} functional, outputs`,
    kind: "package",
    setup(op, { shape, layout, x, gamma, beta, dout, runningMean, runningVar }) {
      initSync({ backend });
      const spatial = shape.length > 2;
      const out = new Float32Array(x.length);
      const fwd = spatial
        ? (param) => spatialBatchnormForward(x, gamma, beta, param, shape, layout, { out })
        : (param) => batchnormForward(x, gamma, beta, param, { out });
      const bnParam = { mode: "train" };
      const { cache } = fwd(bnParam);
      if (op === "train") return { run: () => fwd(bnParam), result: () => fwd(bnParam).out.slice() };
      if (op === "test") {
        const testParam = { mode: "test", runningMean, runningVar };
        return { run: () => fwd(testParam), result: () => fwd(testParam).out.slice() };
      }
      const grads = { dx: new Float32Array(x.length), dgamma: new Float32Array(shape[1]), dbeta: new Float32Array(shape[1]) };
      const backward = spatial ? spatialBatchnormBackward : op === "backward" ? batchnormBackwardAlt : batchnormBackward;
      return { run: () => backward(dout, cache, grads), result: () => backward(dout, cache, grads).dx.slice() };
    },
  };
}

/** The layer, bn.forward / bn.backward: fresh results, or with outputs given. */
function layerApi(backend, given) {
  return {
    name: `${backend} layer${given ? ", outputs" : ""}`,
    kind: "package",
    supports: (op) => op !== "backward-graph",
    setup(op, { shape, layout, x, gamma, beta, dout, runningMean, runningVar }) {
      initSync({ backend });
      const layer = new BatchNorm(shape[1], { layout: layout === "NHWC" ? "NHWC" : "NCHW" });
      layer.gamma.set(gamma);
      layer.beta.set(beta);
      const logical = shape.length > 2 ? shape : undefined;
      const out = new Float32Array(x.length);
      const dx = new Float32Array(x.length);
      const forward = given ? () => layer.forward(x, { shape: logical, out }) : () => layer.forward(x, logical);
      forward();
      if (op === "test") {
        layer.eval();
        layer.runningMean.set(runningMean);
        layer.runningVar.set(runningVar);
      }
      const run = op === "backward" ? (given ? () => layer.backward(dout, { dx }) : () => layer.backward(dout)) : forward;
      return { run, result: () => run().slice(), teardown: () => layer.dispose() };
    },
  };
}

/** Plain JavaScript as a CS231n port writes it: fresh outputs on every call. */
const plainAllocating = {
  name: "plain JS, allocating",
  kind: "js",
  setup(op, { geometry, x, gamma, beta, dout, runningMean, runningVar }) {
    const bnParam = { mode: "train" };
    const { cache } = plainJs.forwardTrain(geometry, x, gamma, beta, bnParam);
    if (op === "train") return { run: () => plainJs.forwardTrain(geometry, x, gamma, beta, bnParam), result: () => plainJs.forwardTrain(geometry, x, gamma, beta, bnParam).out };
    const testParam = { mode: "test", runningMean, runningVar };
    if (op === "test") return { run: () => plainJs.forwardTest(geometry, x, gamma, beta, testParam), result: () => plainJs.forwardTest(geometry, x, gamma, beta, testParam) };
    const form = FORMS[op];
    return { run: () => plainJs.backward(geometry, form, dout, cache), result: () => plainJs.backward(geometry, form, dout, cache).dx };
  },
};

/** The baseline of every speed-up: the reference loops into outputs allocated once. */
const plain = {
  name: "plain JS",
  kind: "baseline",
  setup(op, { geometry, x, gamma, beta, dout, runningMean, runningVar }) {
    const { n, d, S } = geometry;
    const out = new Float32Array(x.length);
    const stats = [0, 1, 2, 3].map(() => new Float32Array(d));
    const train = () => {
      reference.forwardTrain(x, n, d, S, gamma, beta, EPS, 0.9, 1, runMean, runVar, out, ...stats);
      return out;
    };
    const runMean = new Float32Array(d);
    const runVar = new Float32Array(d).fill(1);
    train();
    if (op === "train") return { run: train, result: () => train().slice() };
    if (op === "test") {
      const test = () => {
        reference.forwardTest(x, n, d, S, gamma, beta, EPS, runningMean, runningVar, out);
        return out;
      };
      return { run: test, result: () => test().slice() };
    }
    const dx = new Float32Array(x.length);
    const dgamma = new Float32Array(d);
    const dbeta = new Float32Array(d);
    const back = () => {
      reference.backward(FORMS[op], dout, x, n, d, S, gamma, stats[0], stats[1], stats[3], dx, dgamma, dbeta);
      return dx;
    };
    return { run: back, result: () => back().slice() };
  },
};

/**
 * TensorFlow.js: tf.moments + tf.batchNorm for train, tf.batchNorm for test, tf.grads for
 * backward (tfjs has no batch-norm backward kernel; it differentiates the composed ops and
 * re-runs the forward). Tensors are made outside the timing and results disposed. The
 * running-statistics update is not included (it would add more ops). tfjs-wasm runs one
 * thread in Node.
 */
function tensorflow(backend) {
  return {
    name: `tfjs-${backend} ${tf.version.tfjs}`,
    kind: "peer",
    async prepare() {
      await tf.setBackend(backend);
      await tf.ready();
    },
    setup(op, { shape, layout, x, gamma, beta, dout, runningMean, runningVar }) {
      const [N, C, ...spatial] = shape;
      const channelsFirst = spatial.length > 0 && (layout === "NCHW" || layout === "NCL");
      const stored = channelsFirst ? shape : [N, ...spatial, C];
      const axes = channelsFirst ? [0, ...spatial.map((_, i) => i + 2)] : stored.slice(0, -1).map((_, i) => i);
      const statShape = channelsFirst ? [1, C, ...spatial.map(() => 1)] : [C];
      const xT = tf.tensor(x, stored);
      const doutT = tf.tensor(dout, stored);
      const gammaT = tf.tensor(gamma, statShape);
      const betaT = tf.tensor(beta, statShape);
      const mean = tf.tensor(runningMean, statShape);
      const variance = tf.tensor(runningVar, statShape);
      // tf.batchNorm broadcasts its statistics over the last axis only, so channels-first
      // data takes the same formula written with broadcasting ops.
      const normalize = (xs, mean, variance, b, g) => channelsFirst
        ? tf.add(tf.mul(tf.mul(tf.sub(xs, mean), tf.rsqrt(tf.add(variance, EPS))), g), b)
        : tf.batchNorm(xs, mean, variance, b, g, EPS);
      const forward = (xs, g, b) => {
        const m = tf.moments(xs, axes, channelsFirst);
        return normalize(xs, m.mean, m.variance, b, g);
      };
      const grads = tf.grads(forward);
      let run;
      let read;
      if (op === "train") run = () => tf.tidy(() => forward(xT, gammaT, betaT));
      else if (op === "test") run = () => tf.tidy(() => normalize(xT, mean, variance, betaT, gammaT));
      else {
        run = () => tf.tidy(() => grads([xT, gammaT, betaT], doutT));
        read = (r) => r[0];
      }
      const timed = () => tf.dispose(run());
      const result = () => {
        const r = run();
        const data = (read ? read(r) : r).dataSync().slice();
        tf.dispose(r);
        return data;
      };
      return { run: timed, result, teardown: () => tf.dispose([xT, gammaT, betaT, doutT, mean, variance]) };
    },
  };
}

/**
 * onnxruntime-node, one thread, on exported BatchNormalization models (bench/models, made by
 * scripts/make_onnx_models.py; gamma = 1, beta = 0, running statistics 0 and 1). NCHW
 * forward only: ONNX Runtime has no batch-norm backward. Its calls are asynchronous.
 * Optional: its install script downloads binaries, so it is not a devDependency; the suite
 * includes it when installed (npm install --no-save --ignore-scripts onnxruntime-node).
 */
function onnxruntime(ort) {
  const sessions = new Map();
  return {
    name: `onnxruntime-node ${ort.env.versions?.common ?? ""}`.trim(),
    kind: "peer",
    async: true,
    supports: (op, { shape, layout }) => shape.length === 4 && layout === "NCHW" && (op === "train" || op === "test") && [64, 256].includes(shape[1]),
    async setup(op, { shape, geometry, x }) {
      const file = new URL(`./models/bn2d-${op === "train" ? "train" : "eval"}-c${shape[1]}.onnx`, import.meta.url).pathname;
      if (!sessions.has(file)) {
        sessions.set(file, await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential" }));
      }
      const session = sessions.get(file);
      const feeds = { x: new ort.Tensor("float32", x, shape) };
      const ones = new Float32Array(shape[1]).fill(1);
      const zeros = new Float32Array(shape[1]);
      const expected = op === "train"
        ? plainJs.forwardTrain(geometry, x, ones, zeros, { mode: "train" }).out
        : plainJs.forwardTest(geometry, x, ones, zeros, { runningMean: zeros, runningVar: ones });
      return { run: () => session.run(feeds), result: async () => (await session.run(feeds)).y.data, expected };
    },
  };
}

export async function implementations({ quick }) {
  const list = [zeroCopy("simd"), functional("simd"), functionalOutputs("simd"), layerApi("simd", false), layerApi("simd", true), zeroCopy("scalar"), plain, plainAllocating];
  if (!quick) list.splice(5, 0, functional("scalar"));
  list.push(tensorflow("cpu"), tensorflow("wasm"));
  try {
    list.push(onnxruntime(await import("onnxruntime-node")));
  } catch {
    console.log("onnxruntime-node is not installed, so it is left out (npm install --no-save --ignore-scripts onnxruntime-node adds it).\n");
  }
  return list;
}
