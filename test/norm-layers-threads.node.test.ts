// The norm layers on the threads build (a layer keeps the 2-thread engine it was created
// with): PyTorch's nn.InstanceNorm2d fixtures, train and eval with running statistics, the
// eval step being the batch norm's (which the threads build splits between threads).
import { afterAll, expect, test } from "vitest";
import norms from "./fixtures/norms.json" with { type: "json" };
import { GroupNorm, InstanceNorm, init, initSync, threads } from "../src/index.js";
import { expectClose, maxAbs, tolerance, typed } from "./helpers.js";

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
