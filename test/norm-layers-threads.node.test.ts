// The norm layers on the threads build (a layer keeps the 2-thread engine it was created
// with): PyTorch's nn.InstanceNorm2d fixtures, train and eval with running statistics, the
// eval step being the batch norm's (which the threads build splits between threads).
import { afterAll, describe, expect, test } from "vitest";
import norms from "./fixtures/norms.json" with { type: "json" };
import { GroupNorm, InstanceNorm, LayerNorm, init, initSync, threads } from "../src/index.js";
import { expectClose, expectIdentical, expectRelClose, maxAbs, randn, tolerance, typed } from "./helpers.js";

interface Case {
  name: string; dtype: "float32" | "float64"; shape: number[]; eps: number; layout: "NCHW" | "NHWC" | "NCL" | "NLC";
  affine: boolean; trackRunningStats: boolean; momentum: number; weight: number[] | null; bias_: number[] | null;
  x: number[]; out: number[]; x2: number[]; out2: number[]; xEval: number[]; outEval: number[]; doutEval: number[]; dxEval: number[];
  G?: number; dout: number[]; dx: number[];
}
const modules = (norms as unknown as { modules: { group: Case[]; instance: Case[] } }).modules;

afterAll(() => {
  initSync({ threads: 1 });
});

const close = (dtype: "float32" | "float64", got: ArrayLike<number>, want: number[], what: string) =>
  expectClose(got, want, tolerance(dtype).abs * Math.max(1, maxAbs(want)), what);

test.each(modules.instance.filter((c) => c.trackRunningStats).map((c) => [c.name, c] as const))("InstanceNorm on 2 threads: %s", async (_, c) => {
  await init({ threads: 2 });
  expect(threads()).toBe(2);
  const inorm = new InstanceNorm(c.shape[1], { eps: c.eps, momentum: c.momentum, affine: c.affine, trackRunningStats: true, layout: c.layout, dtype: c.dtype });
  initSync({ threads: 1 });
  expect(inorm.engine.threads).toBe(2);
  if (c.weight) {
    inorm.gamma!.set(c.weight);
    inorm.beta!.set(c.bias_!);
  }
  close(c.dtype, inorm.forward(typed(c.dtype, c.x), c.shape), c.out, "out");
  close(c.dtype, inorm.forward(typed(c.dtype, c.x2), c.shape), c.out2, "out2");
  inorm.eval();
  close(c.dtype, inorm.forward(typed(c.dtype, c.xEval), c.shape), c.outEval, "eval out");
  const dx = inorm.backward(typed(c.dtype, c.doutEval));
  // No cancellation in eval mode's dx = dout·γ·invStd: the output tolerance holds.
  close(c.dtype, dx, c.dxEval, "eval dx");
});

test.each(modules.group.map((c) => [c.name, c] as const))("GroupNorm on 2 threads: %s", async (_, c) => {
  await init({ threads: 2 });
  const gn = new GroupNorm(c.G!, c.shape[1], { eps: c.eps, affine: c.affine, layout: c.layout, dtype: c.dtype });
  expect(gn.engine.threads).toBe(2);
  if (c.weight) {
    gn.gamma!.set(c.weight);
    gn.beta!.set(c.bias_!);
  }
  close(c.dtype, gn.forward(typed(c.dtype, c.x), c.shape), c.out, "out");
});

// Batches beyond THREAD_MIN_BYTES split by items (rows): against one thread, and run to run.
describe.each(["float32", "float64"] as const)("%s, split between 2 threads", (dtype) => {
  const cases: [string, () => LayerNorm<typeof dtype> | GroupNorm<typeof dtype>, number[]][] = [
    ["LayerNorm (700, 1031)", () => new LayerNorm(1031, { dtype }), [700, 1031]],
    ["GroupNorm (6, 64, 30, 30) G = 8 NCHW", () => new GroupNorm(8, 64, { dtype }), [6, 64, 30, 30]],
    ["GroupNorm (6, 64, 30, 30) G = 8 NHWC", () => new GroupNorm(8, 64, { dtype, layout: "NHWC" }), [6, 64, 30, 30]],
  ];
  test.each(cases)("%s", async (_, make, shape) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const x = typed(dtype, randn(61, size, 1e3, 2));
    const dout = typed(dtype, randn(62, size));
    const gamma = randn(63, shape[1], 1, 0.5);
    const beta = randn(64, shape[1]);
    const run = () => {
      const layer = make();
      layer.gamma!.set(gamma);
      layer.beta!.set(beta);
      const out = layer.forward(x, shape);
      const dx = layer.backward(dout);
      return { out, dx, dgamma: Float64Array.from(layer.dgamma!), dbeta: Float64Array.from(layer.dbeta!), engine: layer.engine };
    };
    initSync({ threads: 1 });
    const one = run();
    await init({ threads: 2 });
    const forks = () => two.engine.pool!.forks;
    const two = run();
    const before = forks();
    const again = run();
    expect(again.engine.pool!.forks - before).toBe(4); // three forks forward, one backward
    for (const key of ["out", "dx", "dgamma", "dbeta"] as const) expectIdentical(again[key], two[key], `${key} run to run`);
    const tol = tolerance(dtype);
    expectClose(two.out, one.out, tol.abs * maxAbs(one.out), "out, 2 threads and 1");
    expectClose(two.dx, one.dx, tol.abs * maxAbs(one.dx), "dx, 2 threads and 1");
    expectRelClose(two.dgamma, one.dgamma, tol.rel, "dgamma, 2 threads and 1");
    expectRelClose(two.dbeta, one.dbeta, tol.rel, "dbeta, 2 threads and 1");
  });
});
