// K worker_threads (examples/sync-workers.mjs, on the built package) with uneven shards,
// exchanging statistics and gradient sums over MessagePorts, give the out, dx, dgamma, dbeta
// and running statistics of one process normalizing the whole batch.
import { describe, expect, test } from "vitest";
import type { Dtype, FloatArray } from "../src/dtype.js";
import { type BNParam, batchnormBackwardAlt, batchnormForward, spatialBatchnormBackward, spatialBatchnormForward } from "../src/index.js";
import type { Layout } from "../src/shape.js";
import { expectClose, expectRelClose, randn, tolerance, typed } from "./helpers.js";

interface WorkerResult { out: FloatArray; dx: FloatArray; dgamma: FloatArray; dbeta: FloatArray; runningMean: FloatArray; runningVar: FloatArray }
type RunOnWorkers = (
  shards: { x: FloatArray; dout: FloatArray; shape: number[] }[],
  common: { gamma: FloatArray; beta: FloatArray; layout: Layout; bnParam: BNParam },
) => Promise<WorkerResult[]>;

const example = new URL("../examples/sync-workers.mjs", import.meta.url).href;
const { runOnWorkers } = (await import(example)) as { runOnWorkers: RunOnWorkers };

function concat(parts: FloatArray[]): FloatArray {
  const all = parts[0] instanceof Float64Array ? new Float64Array(parts.reduce((n, p) => n + p.length, 0)) : new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

describe.each(["float64", "float32"] as Dtype[])("%s", (dtype) => {
  test.each([
    { K: 2, sizes: [3, 14], shape: [17, 5], layout: "NCHW" as Layout },
    { K: 3, sizes: [6, 0, 11], shape: [17, 5], layout: "NCHW" as Layout },
    { K: 2, sizes: [1, 6], shape: [7, 3, 4, 6], layout: "NCHW" as Layout },
    { K: 3, sizes: [4, 2, 0], shape: [6, 3, 5, 2], layout: "NHWC" as Layout },
  ])("K = $K workers, shards $sizes of $shape $layout = one process", async ({ sizes, shape, layout }) => {
    const [n, C] = shape;
    const rows = shape.length === 2;
    const item = shape.slice(1).reduce((a, b) => a * b, 1);
    const x = typed(dtype, randn(51 + n, n * item, 2, 3));
    const dout = typed(dtype, randn(52 + n, n * item));
    const gamma = typed(dtype, randn(53, C, 1, 0.5));
    const beta = typed(dtype, randn(54, C));
    const state = (): BNParam => ({
      mode: "train", momentum: 0.1, momentumConvention: "pytorch", runningVariance: "unbiased",
      runningMean: typed(dtype, randn(55, C)), runningVar: typed(dtype, randn(56, C, 2, 0.2)), numBatchesTracked: 3,
    });
    let at = 0;
    const shards = sizes.map((m) => {
      const part = { x: x.slice(at * item, (at + m) * item), dout: dout.slice(at * item, (at + m) * item), shape: [m, ...shape.slice(1)] };
      at += m;
      return part;
    });
    // Rows go through as [N_k, C]: the same as no shape.
    const results = await runOnWorkers(shards, { gamma, beta, layout, bnParam: state() });

    const bnParam = state();
    const forward = rows ? batchnormForward(x, gamma, beta, bnParam) : spatialBatchnormForward(x, gamma, beta, bnParam, shape, layout);
    const backward = rows ? batchnormBackwardAlt(dout, forward.cache) : spatialBatchnormBackward(dout, forward.cache);
    const tol = tolerance(dtype);
    const rel = dtype === "float64" ? 1e-12 : tol.rel;
    expect(results).toHaveLength(sizes.length);
    expectClose(concat(results.map((r) => r.out)), forward.out, dtype === "float64" ? 1e-12 : tol.abs, "out");
    expectRelClose(concat(results.map((r) => r.dx)), backward.dx, dtype === "float64" ? 1e-12 : 4 * tol.rel, "dx");
    for (const [k, r] of results.entries()) {
      expect(r.out).toBeInstanceOf(dtype === "float64" ? Float64Array : Float32Array);
      expectRelClose(r.dgamma, backward.dgamma, rel, `dgamma of worker ${k}`);
      expectRelClose(r.dbeta, backward.dbeta, rel, `dbeta of worker ${k}`);
      expectRelClose(r.runningMean, bnParam.runningMean!, rel, `runningMean of worker ${k}`);
      expectRelClose(r.runningVar, bnParam.runningVar!, rel, `runningVar of worker ${k}`);
      // The merges run in rank order on every worker: the same bits everywhere.
      expect(r.dgamma).toEqual(results[0].dgamma);
      expect(r.runningVar).toEqual(results[0].runningVar);
    }
  });
});
