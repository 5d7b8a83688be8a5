// The benchmarks' data: a shape's kernels' view, random inputs and the plain-JS reference
// results, and the error measure every result is checked with before it is timed.
import { gaussian, rng } from "../build/demo/data.js";
import { plainJs } from "./implementations.mjs";

/** The kernels' view (n, d, S) of a logical shape in a layout (NHWC is the row kernel). */
export function geometryOf(shape, layout) {
  const [N, C, ...spatial] = shape;
  const S = spatial.reduce((a, b) => a * b, 1);
  return layout === "NHWC" ? { n: N * S, d: C, S: 1 } : { n: N, d: C, S };
}

/** x ~ N(3, 2), gamma ~ N(1, 0.3), beta ~ N(0, 0.3), dout ~ N(0, 1), and the reference results. */
export function randomData(shape, layout, seed) {
  const geometry = geometryOf(shape, layout);
  const { n, d, S } = geometry;
  const gauss = gaussian(rng(seed));
  const normal = (loc, scale) => loc + scale * gauss();
  const x = Float32Array.from({ length: n * d * S }, () => normal(3, 2));
  const gamma = Float32Array.from({ length: d }, () => normal(1, 0.3));
  const beta = Float32Array.from({ length: d }, () => normal(0, 0.3));
  const dout = Float32Array.from({ length: n * d * S }, () => normal(0, 1));
  const bnParam = { mode: "train" };
  const { out, cache } = plainJs.forwardTrain(geometry, x, gamma, beta, bnParam);
  const { runningMean, runningVar } = bnParam;
  const expected = {
    train: out,
    test: plainJs.forwardTest(geometry, x, gamma, beta, { runningMean, runningVar }),
    backward: plainJs.backward(geometry, 1, dout, cache).dx,
    "backward-graph": plainJs.backward(geometry, 0, dout, cache).dx,
  };
  return { shape, layout, geometry, x, gamma, beta, dout, runningMean, runningVar, expected };
}

/** The largest |got − want| relative to max(1, |want|). */
export function maxError(got, want) {
  let err = 0;
  let scale = 1;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return err / scale;
}
