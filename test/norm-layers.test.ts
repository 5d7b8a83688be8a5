// The LayerNorm, GroupNorm and InstanceNorm layers against PyTorch's nn.LayerNorm,
// nn.GroupNorm and nn.InstanceNorm1d/2d (test/fixtures/norms.json, "modules", made by
// scripts/fixtures-norms.py) and the functional fixtures; float64 finite differences of each
// backward; state dicts; and bad input refused with nothing changed.
import { describe, expect, test } from "vitest";
import norms from "./fixtures/norms.json" with { type: "json" };
import { type Backend, BatchNorm, ChangedInputError, GroupNorm, InstanceNorm, LayerNorm, initSync } from "../src/index.js";
import { backend as activeBackend } from "../src/wasm.js";
import { expectClose, expectIdentical, expectRelClose, maxAbs, numericGradient, randn, relError, tolerance, typed } from "./helpers.js";
import { expectGradClose, groupTerms, normFixtures, toChannelsFirst } from "./norms-helpers.js";

const BACKENDS: Backend[] = ["simd", "scalar", "js"];

type Dtype = "float32" | "float64";
interface ModuleCase {
  name: string; dtype: Dtype; shape: number[]; eps: number;
  x: number[]; dout: number[]; out: number[]; dx: number[]; dgamma: number[] | null; dbeta: number[] | null;
  weight: number[] | null; bias_: number[] | null;
  normalizedShape?: number[]; elementwiseAffine?: boolean; bias?: boolean;
  G?: number; affine?: boolean; layout?: "NCHW" | "NHWC" | "NCL" | "NLC";
  trackRunningStats?: boolean; momentum?: number;
  x2?: number[]; out2?: number[]; xEval?: number[]; doutEval?: number[]; outEval?: number[];
  dxEval?: number[]; dgammaEval?: number[] | null; dbetaEval?: number[] | null;
  stateDict?: Record<string, number[] | number>;
}
const modules = (norms as unknown as { modules: { layer: ModuleCase[]; group: ModuleCase[]; instance: ModuleCase[] } }).modules;

const product = (a: readonly number[]) => a.reduce((p, v) => p * v, 1);
const channelsLast = (layout: string | undefined) => layout === "NHWC" || layout === "NLC";

const terms = groupTerms;

/** The same terms with the statistics per channel constants (eval mode with running statistics). */
function runningTerms(x: ArrayLike<number>, gamma: ArrayLike<number> | null, dout: ArrayLike<number>, N: number, C: number, S: number, eps: number, mean: number[], variance: number[]) {
  let dx = 0;
  const dg = new Float64Array(C);
  const db = new Float64Array(C);
  for (let i = 0; i < N; i++) {
    for (let c = 0; c < C; c++) {
      const inv = 1 / Math.sqrt(variance[c] + eps);
      for (let s = 0; s < S; s++) {
        const k = (i * C + c) * S + s;
        dx = Math.max(dx, Math.abs((gamma ? gamma[c] : 1) * inv * dout[k]));
        dg[c] += Math.abs(dout[k]) * (Math.abs(x[k] - mean[c]) + Math.abs(x[k]) + Math.abs(mean[c])) * inv;
        db[c] += Math.abs(dout[k]);
      }
    }
  }
  return { dx, dgamma: maxAbs(dg), dbeta: maxAbs(db) };
}

type Terms = ReturnType<typeof terms>;

function expectOut(dtype: Dtype, got: ArrayLike<number>, want: number[], what = "out") {
  expectClose(got, want, tolerance(dtype).abs * Math.max(1, maxAbs(want)), what);
}

/** dx and the layer's dgamma, dbeta against a fixture's (null: the layer has none). */
function expectGrads(
  dtype: Dtype, dx: ArrayLike<number>, layer: { dgamma: ArrayLike<number> | null; dbeta: ArrayLike<number> | null },
  want: { dx: number[]; dgamma: number[] | null; dbeta: number[] | null }, t: Terms, what = "",
) {
  expectGradClose(dtype, dx, want.dx, t.dx, `${what}dx`);
  if (want.dgamma) expectGradClose(dtype, layer.dgamma!, want.dgamma, t.dgamma, `${what}dgamma`);
  else expect(layer.dgamma).toBeNull();
  if (want.dbeta) expectGradClose(dtype, layer.dbeta!, want.dbeta, t.dbeta, `${what}dbeta`);
  else expect(layer.dbeta).toBeNull();
}

/** The (N, C, S) view of a spatial case, and its data in channels-first order. */
function spatial(c: { shape: number[]; layout?: string }) {
  const [N, C] = c.shape;
  const S = product(c.shape.slice(2));
  const first = (a: number[]) => (channelsLast(c.layout) ? toChannelsFirst(a, N, C, S) : a);
  return { N, C, S, first };
}

describe.each(BACKENDS)("%s backend", (backend) => {
  describe("LayerNorm", () => {
    test.each(modules.layer.map((c) => [c.name, c] as const))("PyTorch %s", (_, c) => {
      initSync({ backend });
      const ln = new LayerNorm(c.normalizedShape!, { eps: c.eps, elementwiseAffine: c.elementwiseAffine, bias: c.bias, dtype: c.dtype });
      const D = product(c.normalizedShape!);
      expect(ln.numFeatures).toBe(D);
      if (c.weight) ln.gamma!.set(c.weight);
      else expect(ln.gamma).toBeNull();
      if (c.bias_) ln.beta!.set(c.bias_);
      else expect(ln.beta).toBeNull();
      const x = typed(c.dtype, c.x);
      expectOut(c.dtype, ln.forward(x, c.shape), c.out);
      const dx = ln.backward(typed(c.dtype, c.dout));
      expectGrads(c.dtype, dx, ln, c, terms(c.x, c.weight, c.dout, c.x.length / D, 1, D, 1, c.eps));
      // Without a shape, x is N·D values.
      expectOut(c.dtype, ln.forward(x), c.out, "out without a shape");
    });

    test.each(normFixtures.layer.map((c) => [c.name, c] as const))("F.layer_norm %s", (_, c) => {
      initSync({ backend });
      const [n, d] = c.shape;
      const ln = new LayerNorm(d, { eps: c.eps, dtype: c.dtype });
      ln.gamma!.set(c.gamma);
      ln.beta!.set(c.beta);
      expectOut(c.dtype, ln.forward(typed(c.dtype, c.x), { shape: c.shape }), c.out);
      const dx = ln.backward(typed(c.dtype, c.dout));
      expectGrads(c.dtype, dx, ln, c, terms(c.x, c.gamma, c.dout, n, 1, d, 1, c.eps));
    });

    test.each([true, false])("float64 finite differences, normalizedShape [6, 4], elementwiseAffine %s", (affine) => {
      initSync({ backend });
      const ln = new LayerNorm([6, 4], { dtype: "float64", elementwiseAffine: affine });
      if (affine) {
        ln.gamma!.set(randn(31, 24, 1, 0.5));
        ln.beta!.set(randn(32, 24));
      }
      const shape = [3, 6, 4];
      const x = randn(33, 72, 2, 3);
      const dout = randn(34, 72);
      ln.forward(x, shape);
      const dx = ln.backward(dout);
      const f = () => ln.forward(x, shape);
      expect(relError(dx, numericGradient(f, dout, x))).toBeLessThan(1e-7);
      if (affine) {
        const dgamma = Float64Array.from(ln.dgamma!);
        const dbeta = Float64Array.from(ln.dbeta!);
        expect(relError(dgamma, numericGradient(f, dout, ln.gamma!))).toBeLessThan(1e-7);
        expect(relError(dbeta, numericGradient(f, dout, ln.beta!))).toBeLessThan(1e-7);
      }
    });
  });

  describe("GroupNorm", () => {
    test.each(modules.group.map((c) => [c.name, c] as const))("PyTorch %s", (_, c) => {
      initSync({ backend });
      const gn = new GroupNorm(c.G!, c.shape[1], { eps: c.eps, affine: c.affine, layout: c.layout, dtype: c.dtype });
      if (c.weight) {
        gn.gamma!.set(c.weight);
        gn.beta!.set(c.bias_!);
      } else {
        expect(gn.gamma).toBeNull();
        expect(gn.beta).toBeNull();
      }
      const { N, C, S, first } = spatial(c);
      expectOut(c.dtype, gn.forward(typed(c.dtype, c.x), c.shape), c.out);
      const dx = gn.backward(typed(c.dtype, c.dout));
      expectGrads(c.dtype, dx, gn, c, terms(first(c.x), c.weight, first(c.dout), N, c.G!, C / c.G!, S, c.eps));
    });

    test.each(normFixtures.group.map((c) => [c.name, c] as const))("F.group_norm %s", (_, c) => {
      initSync({ backend });
      const gn = new GroupNorm(c.G!, c.shape[1], { eps: c.eps, dtype: c.dtype });
      gn.gamma!.set(c.gamma);
      gn.beta!.set(c.beta);
      const { N, C, S } = spatial(c);
      expectOut(c.dtype, gn.forward(typed(c.dtype, c.x), c.shape), c.out);
      const dx = gn.backward(typed(c.dtype, c.dout));
      expectGrads(c.dtype, dx, gn, c, terms(c.x, c.gamma, c.dout, N, c.G!, C / c.G!, S, c.eps));
    });

    test.each(["NCHW", "NHWC"] as const)("float64 finite differences, %s", (layout) => {
      initSync({ backend });
      const gn = new GroupNorm(3, 6, { dtype: "float64", layout });
      gn.gamma!.set(randn(41, 6, 1, 0.5));
      gn.beta!.set(randn(42, 6));
      const shape = [2, 6, 3, 2];
      const x = randn(43, 72, -1, 2);
      const dout = randn(44, 72);
      gn.forward(x, shape);
      const dx = gn.backward(dout);
      const dgamma = Float64Array.from(gn.dgamma!);
      const dbeta = Float64Array.from(gn.dbeta!);
      const f = () => gn.forward(x, shape);
      // h = 1e-4: NHWC's smallest dx (2e-4) is lost to rounding at h = 1e-5 (relError 3e-7, 1e-8 at 1e-4).
      const h = 1e-4;
      expect(relError(dx, numericGradient(f, dout, x, h))).toBeLessThan(1e-7);
      expect(relError(dgamma, numericGradient(f, dout, gn.gamma!, h))).toBeLessThan(1e-7);
      expect(relError(dbeta, numericGradient(f, dout, gn.beta!, h))).toBeLessThan(1e-7);
    });
  });

  describe("InstanceNorm", () => {
    test.each(modules.instance.map((c) => [c.name, c] as const))("PyTorch %s: two train steps, eval", (_, c) => {
      initSync({ backend });
      const track = c.trackRunningStats!;
      const inorm = new InstanceNorm(c.shape[1], {
        eps: c.eps, momentum: c.momentum, affine: c.affine, trackRunningStats: track, layout: c.layout, dtype: c.dtype,
      });
      if (c.weight) {
        inorm.gamma!.set(c.weight);
        inorm.beta!.set(c.bias_!);
      }
      const { N, C, S, first } = spatial(c);
      const t = terms(first(c.x), c.weight, first(c.dout), N, C, 1, S, c.eps);
      expectOut(c.dtype, inorm.forward(typed(c.dtype, c.x), c.shape), c.out);
      expectGrads(c.dtype, inorm.backward(typed(c.dtype, c.dout)), inorm, c, t);
      expectOut(c.dtype, inorm.forward(typed(c.dtype, c.x2!), c.shape), c.out2!, "out of the second step");
      const want = c.stateDict!;
      const state = inorm.stateDict();
      expect(Object.keys(state).sort()).toEqual(Object.keys(want).sort());
      const tol = tolerance(c.dtype);
      if (track) {
        expectRelClose(inorm.runningMean!, want.running_mean as number[], tol.rel, "runningMean");
        expectRelClose(inorm.runningVar!, want.running_var as number[], tol.rel, "runningVar");
        expect(state.num_batches_tracked).toBe(want.num_batches_tracked);
      } else {
        expect(inorm.runningMean).toBeNull();
        expect(inorm.runningVar).toBeNull();
      }
      inorm.eval();
      expectOut(c.dtype, inorm.forward(typed(c.dtype, c.xEval!), { shape: c.shape }), c.outEval!, "eval out");
      const dx = inorm.backward(typed(c.dtype, c.doutEval!));
      const te = track
        ? runningTerms(first(c.xEval!), c.weight, first(c.doutEval!), N, C, S, c.eps, want.running_mean as number[], want.running_var as number[])
        : terms(first(c.xEval!), c.weight, first(c.doutEval!), N, C, 1, S, c.eps);
      expectGrads(c.dtype, dx, inorm, { dx: c.dxEval!, dgamma: c.dgammaEval!, dbeta: c.dbetaEval! }, te, "eval ");
    });

    test.each(modules.instance.filter((c) => c.trackRunningStats).map((c) => [c.name, c] as const))("PyTorch's state_dict loaded: %s", (_, c) => {
      initSync({ backend });
      const inorm = new InstanceNorm(c.shape[1], { affine: c.affine, trackRunningStats: true, layout: c.layout, dtype: c.dtype }).eval();
      inorm.loadStateDict(c.stateDict!);
      expectOut(c.dtype, inorm.forward(typed(c.dtype, c.xEval!), c.shape), c.outEval!, "eval out");
    });

    test.each(normFixtures.instance.map((c) => [c.name, c] as const))("F.instance_norm %s", (_, c) => {
      initSync({ backend });
      const C = c.shape[1];
      const S = product(c.shape.slice(2));
      const inorm = new InstanceNorm(C, { eps: c.eps, momentum: c.momentum, affine: true, trackRunningStats: true, dtype: c.dtype });
      inorm.gamma!.set(c.gamma);
      inorm.beta!.set(c.beta);
      expectOut(c.dtype, inorm.forward(typed(c.dtype, c.x), c.shape), c.out);
      const dx = inorm.backward(typed(c.dtype, c.dout));
      expectGrads(c.dtype, dx, inorm, c, terms(c.x, c.gamma, c.dout, c.shape[0], C, 1, S, c.eps));
      const tol = tolerance(c.dtype);
      expectRelClose(inorm.runningMean!, c.runningMean!, tol.rel, "runningMean");
      expectRelClose(inorm.runningVar!, c.runningVar!, tol.rel, "runningVar");
      expectOut(c.dtype, inorm.eval().forward(typed(c.dtype, c.xEval!), c.shape), c.outEval!, "eval out");
    });

    test.each(["NCHW", "NHWC"] as const)("float64 finite differences, train mode, %s", (layout) => {
      initSync({ backend });
      const inorm = new InstanceNorm(4, { dtype: "float64", layout, affine: true, trackRunningStats: true });
      inorm.gamma!.set(randn(51, 4, 1, 0.5));
      inorm.beta!.set(randn(52, 4));
      const shape = [2, 4, 3, 2];
      const x = randn(53, 48, 1, 2);
      const dout = randn(54, 48);
      inorm.forward(x, shape);
      const dx = inorm.backward(dout);
      const dgamma = Float64Array.from(inorm.dgamma!);
      const dbeta = Float64Array.from(inorm.dbeta!);
      const f = () => inorm.forward(x, shape);
      expect(relError(dx, numericGradient(f, dout, x))).toBeLessThan(1e-7);
      expect(relError(dgamma, numericGradient(f, dout, inorm.gamma!))).toBeLessThan(1e-7);
      expect(relError(dbeta, numericGradient(f, dout, inorm.beta!))).toBeLessThan(1e-7);
    });

    test.each(["NCHW", "NHWC"] as const)("eval mode with running statistics, a batch of 768 KiB (normalized in parts), %s: against a plain float64 loop", (layout) => {
      initSync({ backend });
      const [N, C, H, W] = [24, 4, 32, 32];
      const S = H * W;
      const inorm = new InstanceNorm(C, { dtype: "float64", layout, affine: true, trackRunningStats: true }).eval();
      inorm.gamma!.set(randn(67, C, 1, 0.5));
      inorm.beta!.set(randn(68, C));
      inorm.runningMean!.set(randn(69, C, 3));
      inorm.runningVar!.set(randn(70, C).map((v) => 0.5 + v * v));
      const x = randn(71, N * C * S, 3, 2);
      const dout = randn(72, N * C * S);
      const out = inorm.forward(x, [N, C, H, W]);
      const dx = inorm.backward(dout);
      const channel = (k: number) => (layout === "NHWC" ? k % C : Math.floor(k / S) % C);
      const want = { out: new Float64Array(x.length), dx: new Float64Array(x.length), dgamma: new Float64Array(C), dbeta: new Float64Array(C) };
      for (let k = 0; k < x.length; k++) {
        const c = channel(k);
        const inv = 1 / Math.sqrt(inorm.runningVar![c] + inorm.eps);
        const xhat = (x[k] - inorm.runningMean![c]) * inv;
        want.out[k] = xhat * inorm.gamma![c] + inorm.beta![c];
        want.dx[k] = dout[k] * inorm.gamma![c] * inv;
        want.dgamma[c] += dout[k] * xhat;
        want.dbeta[c] += dout[k];
      }
      expectRelClose(out, want.out, 1e-12, "out");
      expectRelClose(dx, want.dx, 1e-12, "dx");
      expectRelClose(inorm.dgamma!, want.dgamma, 1e-10, "dgamma");
      expectRelClose(inorm.dbeta!, want.dbeta, 1e-10, "dbeta");
    });

    test.each(["NCL", "NLC"] as const)("float64 finite differences, eval mode with running statistics, %s", (layout) => {
      initSync({ backend });
      const inorm = new InstanceNorm(3, { dtype: "float64", layout, affine: true, trackRunningStats: true }).eval();
      inorm.gamma!.set(randn(61, 3, 1, 0.5));
      inorm.beta!.set(randn(62, 3));
      inorm.runningMean!.set(randn(63, 3));
      inorm.runningVar!.set(randn(64, 3).map((v) => 0.5 + v * v));
      const shape = [2, 3, 5];
      const x = randn(65, 30, 1, 2);
      const dout = randn(66, 30);
      inorm.forward(x, shape);
      const dx = inorm.backward(dout);
      const dgamma = Float64Array.from(inorm.dgamma!);
      const dbeta = Float64Array.from(inorm.dbeta!);
      const f = () => inorm.forward(x, shape);
      expect(relError(dx, numericGradient(f, dout, x))).toBeLessThan(1e-7);
      expect(relError(dgamma, numericGradient(f, dout, inorm.gamma!))).toBeLessThan(1e-7);
      expect(relError(dbeta, numericGradient(f, dout, inorm.beta!))).toBeLessThan(1e-7);
      // The running statistics are constants: eval mode moves nothing.
      expect(inorm.stateDict().num_batches_tracked).toBe(0);
    });
  });
});

describe("modes, dtypes and engines", () => {
  test("defaults as PyTorch's: ones and zeros, train mode; InstanceNorm without affine or running statistics", () => {
    initSync({ backend: "simd" });
    const ln = new LayerNorm(3);
    expect(ln.dtype).toBe("float32");
    expectIdentical(ln.gamma!, new Float32Array([1, 1, 1]));
    expectIdentical(ln.beta!, new Float32Array(3));
    expect(ln.training).toBe(true);
    expect(ln.eval()).toBe(ln);
    expect(ln.training).toBe(false);
    expect(ln.train().training).toBe(true);
    expect(ln.normalizedShape).toEqual([3]);
    const inorm = new InstanceNorm(2);
    expect([inorm.gamma, inorm.beta, inorm.runningMean, inorm.runningVar]).toEqual([null, null, null, null]);
    expect(inorm.stateDict()).toEqual({});
    expect(new GroupNorm(2, 4, { affine: false }).stateDict()).toEqual({});
    const tracked = new InstanceNorm(2, { trackRunningStats: true, dtype: "float64" });
    expectIdentical(tracked.runningMean!, new Float64Array(2));
    expectIdentical(tracked.runningVar!, new Float64Array([1, 1]));
    expect(tracked.momentum).toBe(0.1);
  });

  test("every array of a layer is of its dtype; the other is refused", () => {
    initSync({ backend: "simd" });
    const gn = new GroupNorm(1, 2, { dtype: "float64" });
    for (const a of [gn.gamma, gn.beta, gn.dgamma, gn.dbeta]) expect(a).toBeInstanceOf(Float64Array);
    const out = gn.forward(Float64Array.from([1, 2, 3, 4]), [2, 2]);
    expect(out).toBeInstanceOf(Float64Array);
    expect(gn.backward(new Float64Array(4))).toBeInstanceOf(Float64Array);
    expect(() => gn.forward(new Float32Array(4) as never)).toThrow(/this layer is float64: x must be a Float64Array/);
    expect(() => gn.backward(new Float32Array(4) as never)).toThrow(/dout must be a Float64Array/);
  });

  test("a layer keeps the engine it was created with", () => {
    initSync({ backend: "scalar" });
    const c = modules.layer.find((m) => m.dtype === "float64" && m.elementwiseAffine && m.bias)!;
    const ln = new LayerNorm(c.normalizedShape!, { dtype: "float64" });
    initSync({ backend: "js" });
    expect(activeBackend()).toBe("js");
    expect(ln.engine.backend).toBe("scalar");
    ln.gamma!.set(c.weight!);
    ln.beta!.set(c.bias_!);
    expectOut("float64", ln.forward(Float64Array.from(c.x), c.shape), c.out);
    initSync({ backend: "simd" });
  });

  test("x and dout may be views of the engine's memory (a BatchNorm workspace's): the layer keeps a copy of x", () => {
    initSync({ backend: "simd" });
    const c = modules.group.find((m) => m.dtype === "float64" && m.affine && m.layout === "NHWC")!;
    const C = c.shape[1];
    const n = c.x.length / C;
    for (const layer of [new GroupNorm(c.G!, C, { dtype: "float64", layout: "NHWC" }), new InstanceNorm(C, { dtype: "float64", layout: "NHWC", affine: true, trackRunningStats: true }).eval()]) {
      layer.gamma!.set(c.weight!);
      layer.beta!.set(c.bias_!);
      if (layer instanceof InstanceNorm) {
        layer.runningMean!.set(randn(111, C));
        layer.runningVar!.set(randn(112, C).map((v) => 1 + v * v));
      }
      // Rows (N·H·W, C): the NHWC data as a workspace holds it.
      const ws = new BatchNorm(C, { dtype: "float64" }).workspace(n);
      ws.x.set(c.x);
      ws.dout.set(c.dout);
      const out = layer.forward(ws.x, c.shape);
      const dxPlain = layer.backward(Float64Array.from(c.dout));
      const outPlain = layer.forward(Float64Array.from(c.x), c.shape);
      expectIdentical(out, outPlain, "out");
      layer.forward(ws.x, c.shape);
      ws.x.fill(0);
      expectIdentical(layer.backward(ws.dout), dxPlain, "dx");
      ws.dispose();
    }
  });

  test("GroupNorm and LayerNorm are the same in eval mode; InstanceNorm without running statistics too", () => {
    initSync({ backend: "simd" });
    const c = modules.group[0];
    const gn = new GroupNorm(c.G!, c.shape[1], { layout: c.layout, dtype: c.dtype }).eval();
    gn.gamma!.set(c.weight!);
    gn.beta!.set(c.bias_!);
    expectOut(c.dtype, gn.forward(typed(c.dtype, c.x), c.shape), c.out);
    const l = modules.layer[1];
    const ln = new LayerNorm(l.normalizedShape!, { dtype: l.dtype }).eval();
    ln.gamma!.set(l.weight!);
    ln.beta!.set(l.bias_!);
    expectOut(l.dtype, ln.forward(typed(l.dtype, l.x), l.shape), l.out);
    const i = modules.instance.find((m) => !m.trackRunningStats)!;
    const inorm = new InstanceNorm(i.shape[1], { affine: true, dtype: i.dtype }).eval();
    inorm.gamma!.set(i.weight!);
    inorm.beta!.set(i.bias_!);
    expectOut(i.dtype, inorm.forward(typed(i.dtype, i.x), i.shape), i.out);
  });

  test("given outputs: out filled and returned; dx may be dout", () => {
    initSync({ backend: "simd" });
    const c = modules.layer.find((m) => m.dtype === "float64" && m.elementwiseAffine)!;
    const ln = new LayerNorm(c.normalizedShape!, { dtype: "float64" });
    ln.gamma!.set(c.weight!);
    ln.beta!.set(c.bias_!);
    const out = new Float64Array(c.x.length);
    expect(ln.forward(Float64Array.from(c.x), { shape: c.shape, out })).toBe(out);
    expectOut("float64", out, c.out);
    const dout = Float64Array.from(c.dout);
    expect(ln.backward(dout, { dx: dout })).toBe(dout);
    const D = product(c.normalizedShape!);
    expectGrads("float64", dout, ln, c, terms(c.x, c.weight, c.dout, c.x.length / D, 1, D, 1, c.eps));
  });

  test("a backward refuses an x changed since the forward, and writes nothing", () => {
    initSync({ backend: "simd" });
    for (const layer of [new LayerNorm(4, { dtype: "float64" }), new InstanceNorm(2, { dtype: "float64", trackRunningStats: true, affine: true }).eval()]) {
      const x = randn(81, 16);
      layer.forward(x, layer instanceof LayerNorm ? [4, 4] : [2, 2, 4]);
      layer.dgamma!.fill(7);
      x[3] += 1;
      const dx = new Float64Array(16).fill(5);
      expect(() => layer.backward(randn(82, 16), { dx })).toThrow(ChangedInputError);
      expectIdentical(dx, new Float64Array(16).fill(5));
      expectIdentical(layer.dgamma!, new Float64Array(layer.numFeatures).fill(7));
    }
  });
});

describe("state dicts", () => {
  test("round trip in PyTorch's names, nested arrays accepted (a tensor's tolist())", () => {
    initSync({ backend: "simd" });
    const a = new LayerNorm([2, 3], { dtype: "float64" });
    a.gamma!.set(randn(91, 6));
    a.beta!.set(randn(92, 6));
    const state = a.stateDict();
    expect(Object.keys(state)).toEqual(["weight", "bias"]);
    const b = new LayerNorm([2, 3], { dtype: "float64" }).loadStateDict(JSON.parse(JSON.stringify(state)));
    expectIdentical(b.gamma!, a.gamma!);
    expectIdentical(b.beta!, a.beta!);
    const nested = { weight: [[1, 2, 3], [4, 5, 6]], bias: [[0, 0, 0], [1, 1, 1]] };
    b.loadStateDict(nested);
    expectIdentical(b.gamma!, Float64Array.from([1, 2, 3, 4, 5, 6]));
    expect(new LayerNorm(3, { bias: false }).stateDict()).toEqual({ weight: [1, 1, 1] });
    const inorm = new InstanceNorm(2, { trackRunningStats: true });
    inorm.loadStateDict({ running_mean: [1, 2], running_var: [3, 4], num_batches_tracked: 5 });
    expect(inorm.stateDict()).toEqual({ running_mean: [1, 2], running_var: [3, 4], num_batches_tracked: 5 });
    expect(inorm.numBatchesTracked).toBe(5);
  });

  const good = () => ({ weight: [1, 2], bias: [3, 4], running_mean: [5, 6], running_var: [7, 8], num_batches_tracked: 1 });
  test.each<[string, Record<string, unknown>, RegExp]>([
    ["a missing key", (({ bias: _, ...rest }) => rest)(good()), /missing key\(s\) in state: bias/],
    ["an unknown key", { ...good(), gamma: [1, 1] }, /unexpected key\(s\) in state: gamma/],
    ["a wrong length", { ...good(), running_mean: [1, 2, 3] }, /state.running_mean must have 2 values, got 3/],
    ["a string", { ...good(), weight: [1, "2"] }, /state.weight\[1\] must be a number, got "2"/],
    ["an Int32Array", { ...good(), bias: new Int32Array(2) }, /state.bias must be an array or a Float32Array\/Float64Array/],
    ["NaN", { ...good(), weight: [NaN, 1] }, /must be a finite float32 number/],
    ["beyond float32", { ...good(), bias: [1e39, 1] }, /state.bias\[0\] must be a finite float32 number/],
    ["a negative variance", { ...good(), running_var: [1, -1] }, /must be a variance ≥ 0/],
    ["a bad count", { ...good(), num_batches_tracked: 1.5 }, /num_batches_tracked must be a whole number/],
  ])("%s is refused and nothing changes", (_, state, message) => {
    initSync({ backend: "simd" });
    const inorm = new InstanceNorm(2, { affine: true, trackRunningStats: true });
    inorm.loadStateDict({ weight: [9, 9], bias: [8, 8], running_mean: [7, 7], running_var: [6, 6], num_batches_tracked: 3 });
    const before = inorm.stateDict();
    expect(() => inorm.loadStateDict(state as never)).toThrow(message);
    expect(inorm.stateDict()).toEqual(before);
  });

  test("not an object", () => {
    expect(() => new GroupNorm(1, 2).loadStateDict(null as never)).toThrow(TypeError);
    expect(() => new GroupNorm(1, 2, { affine: false }).loadStateDict({ weight: [1, 1] })).toThrow(/unexpected key\(s\) in state: weight \(expected none\)/);
  });
});

describe("errors: refused with nothing changed", () => {
  test.each<[string, () => unknown, RegExp]>([
    ["LayerNorm's unknown option", () => new LayerNorm(4, { affine: false } as never), /LayerNorm options has no option "affine"/],
    ["LayerNorm's misspelt option", () => new LayerNorm(4, { elementwise_affine: false } as never), /did you mean 'elementwiseAffine'/],
    ["normalizedShape", () => new LayerNorm([4, 0]), /normalizedShape\[1\] must be a positive integer/],
    ["empty normalizedShape", () => new LayerNorm([]), /normalizedShape must be/],
    ["dtype", () => new LayerNorm(4, { dtype: "float16" as never }), /options.dtype must be 'float32' or 'float64'/],
    ["eps", () => new LayerNorm(4, { eps: -1 }), /options.eps must be a finite number/],
    ["eps null", () => new GroupNorm(1, 4, { eps: null as never }), /options.eps must be a finite number/],
    ["a flag not boolean", () => new GroupNorm(2, 4, { affine: 1 as never }), /options.affine must be true or false/],
    ["numGroups not dividing numChannels", () => new GroupNorm(3, 4), /numGroups = 3 must divide numChannels = 4/],
    ["numGroups", () => new GroupNorm(0, 4), /numGroups must be a positive integer/],
    ["layout", () => new GroupNorm(2, 4, { layout: "CHW" as never }), /options.layout must be/],
    ["momentum", () => new InstanceNorm(4, { momentum: 2 }), /options.momentum must be a number in \[0, 1\]/],
    ["InstanceNorm's momentum null", () => new InstanceNorm(4, { momentum: null as never }), /options.momentum must be a number/],
    ["options not an object", () => new InstanceNorm(4, 5 as never), /InstanceNorm options must be an object/],
  ])("%s", (_, call, message) => {
    expect(call).toThrow(message);
  });

  test("backward before any forward", () => {
    initSync({ backend: "simd" });
    expect(() => new LayerNorm(2).backward(new Float32Array(2))).toThrow(/LayerNorm.backward needs a forward first/);
    expect(() => new GroupNorm(1, 2).backward(new Float32Array(2))).toThrow(/GroupNorm.backward needs a forward first/);
    expect(() => new InstanceNorm(2).backward(new Float32Array(2))).toThrow(/InstanceNorm.backward needs a forward first/);
  });

  /** A layer after one good forward, and what must stay as it is when a later call fails. */
  function prepared() {
    initSync({ backend: "simd" });
    const layers = {
      ln: new LayerNorm([6, 4], { dtype: "float64" }),
      gn: new GroupNorm(2, 4, { dtype: "float64", layout: "NHWC" }),
      inorm: new InstanceNorm(4, { dtype: "float64", affine: true, trackRunningStats: true }),
    };
    const x = randn(101, 48);
    const dout = randn(102, 48);
    layers.ln.forward(x, [2, 6, 4]);
    layers.gn.forward(x, [2, 4, 6]);
    layers.inorm.forward(x, [2, 4, 6]);
    const snapshot = () => Object.values(layers).map((l) => JSON.stringify({ ...l.stateDict(), dgamma: Array.from(l.dgamma!), dbeta: Array.from(l.dbeta!) }));
    const gradients = () => Object.values(layers).map((l) => Array.from(l.backward(Float64Array.from(dout))));
    return { layers, x, snapshot, gradients };
  }

  const x48 = () => new Float64Array(48);
  test.each<[string, (l: ReturnType<typeof prepared>["layers"], x: Float64Array) => unknown, RegExp]>([
    ["LayerNorm: x not N·D", (l) => l.ln.forward(new Float64Array(30)), /positive multiple of D = 24/],
    ["LayerNorm: trailing dims not normalizedShape", (l) => l.ln.forward(x48(), [2, 4, 6]), /shape \[2, 4, 6\] must end with normalizedShape \[6, 4\]/],
    ["LayerNorm: a shape too short", (l) => l.ln.forward(x48(), [4]), /must end with normalizedShape/],
    ["LayerNorm: a shape of another size", (l) => l.ln.forward(x48(), [3, 6, 4]), /x must have 72 values for shape \[3, 6, 4\]/],
    ["LayerNorm: a forward options key", (l) => l.ln.forward(x48(), { shap: [2, 6, 4] } as never), /forward options has no option "shap"/],
    ["LayerNorm: out overlapping x", (l, x) => l.ln.forward(x, { out: x }), /options.out shares memory with x/],
    ["LayerNorm: out's length", (l) => l.ln.forward(x48(), { out: new Float64Array(47) }), /options.out must have length 48/],
    ["LayerNorm: gamma replaced", (l) => { l.ln.gamma = new Float64Array(5); return l.ln.forward(x48()); }, /layer.gamma must have length 24/],
    ["LayerNorm: eps set wrong", (l) => { l.ln.eps = NaN; return l.ln.forward(x48()); }, /layer.eps must be a finite number/],
    ["GroupNorm: shape's C", (l) => l.gn.forward(x48(), [2, 6, 4]), /shape\[1\] must be the number of channels, 4/],
    ["GroupNorm: shape's size", (l) => l.gn.forward(x48(), [2, 4, 5]), /must have 40 values/],
    ["GroupNorm: 5 dims", (l) => l.gn.forward(x48(), [2, 4, 3, 2, 1]), /shape must be \[N, C\], \[N, C, L\] or \[N, C, H, W\]/],
    ["InstanceNorm: no shape", (l) => l.inorm.forward(x48(), undefined as never), /InstanceNorm.forward needs the shape/],
    ["InstanceNorm: [N, C]", (l) => l.inorm.forward(new Float64Array(8), [2, 4]), /needs the shape \[N, C, L\] or \[N, C, H, W\]/],
    ["InstanceNorm: one position in train mode", (l) => l.inorm.forward(new Float64Array(8), [2, 4, 1]), /Expected more than 1 spatial element when training/],
    ["InstanceNorm: momentum set wrong", (l) => { l.inorm.momentum = -1; return l.inorm.forward(x48(), [2, 4, 6]); }, /layer.momentum must be a number in \[0, 1\]/],
    ["InstanceNorm: runningVar replaced", (l) => { l.inorm.runningVar = new Float64Array(3); return l.inorm.forward(x48(), [2, 4, 6]); }, /layer.runningVar must have length 4/],
    ["InstanceNorm: out overlapping runningMean", (l) => l.inorm.forward(new Float64Array(4), { shape: [1, 4, 1], out: l.inorm.runningMean! }), /options.out shares memory with layer.runningMean/],
    ["backward: dout's length", (l) => l.gn.backward(new Float64Array(47)), /dout must have length 48 \(shape \[2, 4, 6\]/],
    ["backward: an options key", (l) => l.gn.backward(x48(), { dgamma: new Float64Array(4) } as never), /backward options has no option "dgamma"/],
    ["backward: dx overlapping dgamma", (l) => {
      const buffer = new Float64Array(48);
      l.inorm.dgamma = buffer.subarray(0, 4);
      return l.inorm.backward(x48(), { dx: buffer });
    }, /options.dx shares memory with layer.dgamma/],
    ["backward: dgamma replaced", (l) => { l.gn.dgamma = new Float64Array(2); return l.gn.backward(x48()); }, /layer.dgamma must have length 4/],
  ])("%s", (_, call, message) => {
    const p = prepared();
    const before = p.snapshot();
    const copy = Float64Array.from(p.x);
    const { ln, gn, inorm } = p.layers;
    const kept = {
      ln: { gamma: ln.gamma, eps: ln.eps, dgamma: ln.dgamma },
      gn: { dgamma: gn.dgamma },
      inorm: { momentum: inorm.momentum, runningVar: inorm.runningVar, dgamma: inorm.dgamma },
    };
    expect(() => call(p.layers, p.x)).toThrow(message);
    expectIdentical(p.x, copy, "x");
    // Put back what the call replaced (left as it was), then: the same state, and the last good forward's backward.
    Object.assign(p.layers.ln, kept.ln);
    Object.assign(p.layers.gn, kept.gn);
    Object.assign(p.layers.inorm, kept.inorm);
    expect(p.snapshot()).toEqual(before);
    const fresh = prepared();
    expect(p.gradients()).toEqual(fresh.gradients());
  });
});

// The zero-copy path: layer.workspace(shape) against the same PyTorch fixtures, and the
// copying path's exact results (the same kernels on the same values).
describe.each(BACKENDS)("%s backend, workspaces", (backend) => {
  test.each(modules.layer.map((c) => [c.name, c] as const))("LayerNorm, PyTorch %s", (_, c) => {
    initSync({ backend });
    const ln = new LayerNorm(c.normalizedShape!, { eps: c.eps, elementwiseAffine: c.elementwiseAffine, bias: c.bias, dtype: c.dtype });
    if (c.weight) ln.gamma!.set(c.weight);
    if (c.bias_) ln.beta!.set(c.bias_);
    const D = product(c.normalizedShape!);
    const ws = ln.workspace(c.shape);
    expect(ws.size).toBe(c.x.length);
    ws.x.set(c.x);
    expectOut(c.dtype, ws.forward(), c.out);
    ws.dout.set(c.dout);
    expectGrads(c.dtype, ws.backward(), ln, c, terms(c.x, c.weight, c.dout, c.x.length / D, 1, D, 1, c.eps));
    const copied = ln.forward(typed(c.dtype, c.x), c.shape);
    expectIdentical(ws.out, copied, "out, workspace and copying path");
    expectIdentical(ws.dx, ln.backward(typed(c.dtype, c.dout)), "dx, workspace and copying path");
    ws.dispose();
  });

  test.each(modules.group.map((c) => [c.name, c] as const))("GroupNorm, PyTorch %s", (_, c) => {
    initSync({ backend });
    const gn = new GroupNorm(c.G!, c.shape[1], { eps: c.eps, affine: c.affine, layout: c.layout, dtype: c.dtype });
    if (c.weight) {
      gn.gamma!.set(c.weight);
      gn.beta!.set(c.bias_!);
    }
    const { N, C, S, first } = spatial(c);
    const ws = gn.workspace(c.shape);
    ws.x.set(c.x);
    expectOut(c.dtype, ws.forward(), c.out);
    expect(ws.statistics).toBe(N * c.G!);
    ws.dout.set(c.dout);
    expectGrads(c.dtype, ws.backward(), gn, c, terms(first(c.x), c.weight, first(c.dout), N, c.G!, C / c.G!, S, c.eps));
    ws.dispose();
  });

  test.each(modules.instance.map((c) => [c.name, c] as const))("InstanceNorm, PyTorch %s: two train steps, eval", (_, c) => {
    initSync({ backend });
    const track = c.trackRunningStats!;
    const inorm = new InstanceNorm(c.shape[1], { eps: c.eps, momentum: c.momentum, affine: c.affine, trackRunningStats: track, layout: c.layout, dtype: c.dtype });
    if (c.weight) {
      inorm.gamma!.set(c.weight);
      inorm.beta!.set(c.bias_!);
    }
    const { N, C, S, first } = spatial(c);
    const ws = inorm.workspace(c.shape);
    ws.x.set(c.x);
    expectOut(c.dtype, ws.forward(), c.out);
    ws.dout.set(c.dout);
    expectGrads(c.dtype, ws.backward(), inorm, c, terms(first(c.x), c.weight, first(c.dout), N, C, 1, S, c.eps));
    ws.x.set(c.x2!);
    expectOut(c.dtype, ws.forward(), c.out2!, "out of the second step");
    const want = c.stateDict!;
    if (track) {
      const tol = tolerance(c.dtype);
      expectRelClose(inorm.runningMean!, want.running_mean as number[], tol.rel, "runningMean");
      expectRelClose(inorm.runningVar!, want.running_var as number[], tol.rel, "runningVar");
      // Eval mode with running statistics: each channel normalized with them, and its
      // backward with them as constants; the running statistics stay as they are.
      inorm.eval();
      const running = [Array.from(inorm.runningMean!), Array.from(inorm.runningVar!)];
      ws.x.set(c.xEval!);
      expectOut(c.dtype, ws.forward(), c.outEval!, "eval out");
      ws.dout.set(c.doutEval!);
      const te = runningTerms(first(c.xEval!), c.weight, first(c.doutEval!), N, C, S, c.eps, want.running_mean as number[], want.running_var as number[]);
      expectGrads(c.dtype, ws.backward(), inorm, { dx: c.dxEval!, dgamma: c.dgammaEval!, dbeta: c.dbetaEval! }, te, "eval ");
      expect([Array.from(inorm.runningMean!), Array.from(inorm.runningVar!)]).toEqual(running);
      // The copying path gives the same numbers.
      expectIdentical(ws.out, inorm.forward(typed(c.dtype, c.xEval!), c.shape), "eval out, workspace and copying path");
    } else {
      // Eval mode without them: the same computation as train mode.
      inorm.eval();
      ws.x.set(c.xEval!);
      expectOut(c.dtype, ws.forward(), c.outEval!, "eval out");
    }
    ws.dispose();
  });

  test("float32 GroupNorm NHWC beyond the caches' parts, and its views after the memory grew", () => {
    initSync({ backend });
    const gn = new GroupNorm(4, 32, { layout: "NHWC" });
    gn.gamma!.set(randn(51, 32, 1, 0.5));
    gn.beta!.set(randn(52, 32));
    const shape = [2, 32, 40, 40];
    const x = Float32Array.from(randn(53, 102400, 1e3, 1));
    const dout = Float32Array.from(randn(54, 102400));
    const ws = gn.workspace(shape);
    const oldX = ws.x;
    // Another workspace grows the memory: views are taken again from the getters.
    const other = new GroupNorm(1, 32).workspace([16, 32, 64, 64]);
    ws.x.set(x);
    ws.dout.set(dout);
    const out = Float32Array.from(ws.forward());
    const dx = Float32Array.from(ws.backward());
    expectIdentical(out, gn.forward(x, shape), "out");
    expectIdentical(dx, gn.backward(dout), "dx");
    // The memory grew (the js backend's need not): the old view is detached, the getter's is on the current buffer.
    const grew = oldX.buffer !== gn.engine.heap.buffer;
    if (backend !== "js") expect(grew).toBe(true);
    if (grew) expect(oldX.length).toBe(0);
    expect(ws.x.buffer).toBe(gn.engine.heap.buffer);
    other.dispose();
    ws.dispose();
  });

  test("errors: backward first, a disposed workspace, bad shapes", () => {
    initSync({ backend });
    const ln = new LayerNorm([6, 4]);
    const ws = ln.workspace(3);
    expect(ws.shape).toEqual([3, 6, 4]);
    expect(() => ws.backward()).toThrow(/needs a forward\(\) first/);
    ws.dispose();
    expect(() => ws.forward()).toThrow(/disposed/);
    expect(() => ws.x).toThrow(/disposed/);
    expect(() => ln.workspace([3, 4, 6])).toThrow(/must end with normalizedShape \[6, 4\]/);
    expect(() => ln.workspace(0)).toThrow(/batchSize must be a positive integer/);
    expect(() => new GroupNorm(2, 6).workspace([2, 4, 5])).toThrow(/shape\[1\] must be the number of channels, 6/);
    expect(() => new GroupNorm(2, 6).workspace("2" as never)).toThrow(/workspace needs a shape/);
    expect(() => new InstanceNorm(6).workspace([2, 6, 1])).toThrow(/more than 1 spatial element/);
    expect(() => new InstanceNorm(6).workspace([2, 6])).toThrow(/\[N, C, L\] or \[N, C, H, W\]/);
    const bad = new LayerNorm(4);
    const w = bad.workspace(2);
    bad.eps = -1;
    expect(() => w.forward()).toThrow(/eps/);
    expect(w.hasCache).toBe(false);
    w.dispose();
  });
});
