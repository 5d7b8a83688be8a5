// The implementations the benchmarks compare. Each `setup(op, data)` prepares everything
// outside the timing (instantiation, tensors, workspaces) and returns
// { run, result, teardown }: `run` is what is timed, `result` computes the output once for the
// check against the reference.
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import {
  BatchNorm, batchnormBackward, batchnormBackwardAlt, batchnormForward, initSync, reference,
} from "../dist/index.js";

const EPS = 1e-5;

/** Idiomatic plain JavaScript: the package's reference loops, allocating outputs per call. */
export const plainJs = {
  forwardTrain(x, gamma, beta, bnParam) {
    const d = gamma.length;
    const n = x.length / d;
    const out = new Float32Array(x.length);
    const stats = [0, 1, 2, 3].map(() => new Float32Array(d));
    bnParam.runningMean ??= new Float32Array(d);
    bnParam.runningVar ??= new Float32Array(d);
    reference.forwardTrain(x, n, d, gamma, beta, EPS, 0.9, bnParam.runningMean, bnParam.runningVar, out, ...stats);
    return { out, cache: { x, gamma, n, d, mean: stats[0], meanLo: stats[1], invStd: stats[3] } };
  },
  forwardTest(x, gamma, beta, bnParam) {
    const d = gamma.length;
    const out = new Float32Array(x.length);
    reference.forwardTest(x, x.length / d, d, gamma, beta, EPS, bnParam.runningMean, bnParam.runningVar, out);
    return out;
  },
  backward(form, dout, cache) {
    const { x, gamma, n, d, mean, meanLo, invStd } = cache;
    const dx = new Float32Array(x.length);
    const dgamma = new Float32Array(d);
    const dbeta = new Float32Array(d);
    reference.backward(form, dout, x, n, d, gamma, mean, meanLo, invStd, dx, dgamma, dbeta);
    return { dx, dgamma, dbeta };
  },
};

const FORMS = { backward: 1, "backward-graph": 0 };

function zeroCopy(backend) {
  return {
    name: `${backend} zero-copy`,
    kind: "package",
    setup(op, { n, d, x, gamma, beta, dout, runningMean, runningVar }) {
      initSync({ backend });
      const layer = new BatchNorm(d);
      layer.gamma.set(gamma);
      layer.beta.set(beta);
      const ws = layer.workspace(n);
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
    setup(op, { x, gamma, beta, dout, runningMean, runningVar }) {
      initSync({ backend });
      const bnParam = { mode: "train" };
      const { cache } = batchnormForward(x, gamma, beta, bnParam);
      if (op === "train") return { run: () => batchnormForward(x, gamma, beta, bnParam), result: () => batchnormForward(x, gamma, beta, bnParam).out };
      if (op === "test") {
        const testParam = { mode: "test", runningMean, runningVar };
        return { run: () => batchnormForward(x, gamma, beta, testParam), result: () => batchnormForward(x, gamma, beta, testParam).out };
      }
      const backward = op === "backward" ? batchnormBackwardAlt : batchnormBackward;
      return { run: () => backward(dout, cache), result: () => backward(dout, cache).dx };
    },
  };
}

const plain = {
  name: "plain JS",
  kind: "baseline",
  setup(op, { x, gamma, beta, dout, runningMean, runningVar }) {
    const bnParam = { mode: "train" };
    const { cache } = plainJs.forwardTrain(x, gamma, beta, bnParam);
    if (op === "train") return { run: () => plainJs.forwardTrain(x, gamma, beta, bnParam), result: () => plainJs.forwardTrain(x, gamma, beta, bnParam).out };
    const testParam = { mode: "test", runningMean, runningVar };
    if (op === "test") return { run: () => plainJs.forwardTest(x, gamma, beta, testParam), result: () => plainJs.forwardTest(x, gamma, beta, testParam) };
    const form = FORMS[op];
    return { run: () => plainJs.backward(form, dout, cache), result: () => plainJs.backward(form, dout, cache).dx };
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
    setup(op, { n, d, x, gamma, beta, dout, runningMean, runningVar }) {
      const xT = tf.tensor2d(x, [n, d]);
      const gammaT = tf.tensor1d(gamma);
      const betaT = tf.tensor1d(beta);
      const doutT = tf.tensor2d(dout, [n, d]);
      const mean = tf.tensor1d(runningMean);
      const variance = tf.tensor1d(runningVar);
      const forward = (xs, g, b) => {
        const m = tf.moments(xs, 0);
        return tf.batchNorm(xs, m.mean, m.variance, b, g, EPS);
      };
      const grads = tf.grads(forward);
      let run;
      let read;
      if (op === "train") run = () => tf.tidy(() => forward(xT, gammaT, betaT));
      else if (op === "test") run = () => tf.tidy(() => tf.batchNorm(xT, mean, variance, betaT, gammaT, EPS));
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

export function implementations({ quick }) {
  const list = [zeroCopy("simd"), functional("simd"), zeroCopy("scalar"), plain];
  if (!quick) list.splice(3, 0, functional("scalar"));
  list.push(tensorflow("cpu"), tensorflow("wasm"));
  return list;
}
