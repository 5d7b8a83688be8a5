// The BatchNorm layer and its zero-copy workspace, against the float64 fixtures.
import { describe, expect, test } from "vitest";
import { type Backend, BatchNorm, initSync } from "../src/index.js";
import { expectClose, expectDxClose, expectRelClose, fixtures, tolerance, typed } from "./helpers.js";

const cases = fixtures.cases.filter((c) => c.n > 1);

describe.each(["simd", "scalar", "js"] as Backend[])("%s backend", (backend) => {
  test("starts like every framework's layer: gamma 1, beta 0, running mean 0, running var 1, train mode", () => {
    initSync({ backend });
    const bn = new BatchNorm(3);
    expect(bn.dtype).toBe("float32");
    expect(bn.gamma).toEqual(new Float32Array([1, 1, 1]));
    expect(bn.beta).toEqual(new Float32Array(3));
    expect(bn.runningMean).toEqual(new Float32Array(3));
    expect(bn.runningVar).toEqual(new Float32Array([1, 1, 1]));
    expect(bn.training).toBe(true);
    expect(bn.eval()).toBe(bn);
    expect(bn.training).toBe(false);
    expect(bn.train().training).toBe(true);
    expect(new BatchNorm(2, { dtype: "float64" }).gamma).toBeInstanceOf(Float64Array);
  });

  describe.each(cases)("$name", (c) => {
    const tol = tolerance(c.dtype);

    function layer() {
      initSync({ backend });
      const bn = new BatchNorm(c.d, { eps: c.eps, momentum: 0.6, dtype: c.dtype });
      bn.gamma.set(c.gamma);
      bn.beta.set(c.beta);
      return bn;
    }

    test("forward and backward (copying)", () => {
      const bn = layer();
      const out = bn.forward(typed(c.dtype, c.x));
      expectClose(out, c.out, tol.abs, "out");
      expectRelClose(bn.runningMean, c.mean.map((m) => 0.4 * m), tol.rel, "runningMean");
      expectRelClose(bn.runningVar, c.var.map((v) => 0.6 + 0.4 * v), tol.rel, "runningVar");
      const dx = bn.backward(typed(c.dtype, c.dout));
      expectDxClose(dx, c);
      expectRelClose(bn.dgamma, c.dgamma, tol.rel, "dgamma");
      expectRelClose(bn.dbeta, c.dbeta, tol.rel, "dbeta");
    });

    test("zero-copy workspace: same results, both backward forms", () => {
      const bn = layer();
      const ws = bn.workspace(c.n);
      ws.x.set(c.x);
      const out = ws.forward();
      expect(out.buffer).toBe(ws.x.buffer);
      expectClose(out, c.out, tol.abs, "out");
      ws.dout.set(c.dout);
      expectDxClose(ws.backward(), c);
      expectRelClose(bn.dgamma, c.dgamma, tol.rel, "dgamma");
      bn.dgamma.fill(0);
      expectDxClose(ws.backward({ form: "graph" }), c);
      expectRelClose(bn.dgamma, c.dgamma, tol.rel, "dgamma (graph form)");
      // Eval mode: the workspace reports the frozen statistics it normalized with.
      const frozenVar = c.var.map((v) => 2 * v + 1);
      bn.runningVar.set(frozenVar);
      bn.eval();
      ws.forward();
      expectRelClose(ws.mean, bn.runningMean, tol.rel, "eval mean");
      expectRelClose(ws.invStd, frozenVar.map((v) => 1 / Math.sqrt(v + c.eps)), tol.rel, "eval invStd");
      ws.dispose();
      expect(() => ws.x).toThrow(/disposed/);
      expect(() => ws.forward()).toThrow(/disposed/);
    });
  });

  describe.each(fixtures.sequences)("$name", (s) => {
    test("train steps, then eval() uses the running statistics", () => {
      initSync({ backend });
      const tol = tolerance(s.dtype);
      const bn = new BatchNorm(s.d, { eps: s.eps, momentum: s.momentum, dtype: s.dtype });
      bn.gamma.set(s.gamma);
      bn.beta.set(s.beta);
      bn.runningVar.fill(0); // the fixture starts from CS231n's zeros
      for (const batch of s.batches) bn.forward(typed(s.dtype, batch));
      expectRelClose(bn.runningMean, s.runningMean, tol.rel, "runningMean");
      expectRelClose(bn.runningVar, s.runningVar, tol.rel, "runningVar");
      const runningMean = bn.runningMean.slice();
      expectClose(bn.eval().forward(typed(s.dtype, s.xTest)), s.outTest, tol.abs, "eval out");
      expect(bn.runningMean).toEqual(runningMean);
      // Eval-mode backward: the running statistics are constants (fine-tuning).
      const dout = typed(s.dtype, s.xTest.map((v, i) => Math.sin(i)));
      const dx = bn.backward(dout);
      const want = Array.from(dout, (g, i) => (g * s.gamma[i % s.d]) / Math.sqrt(s.runningVar[i % s.d] + s.eps));
      expectRelClose(dx, want, tol.rel, "eval-mode dx");
      const xHat = s.xTest.map((v, i) => (v - s.runningMean[i % s.d]) / Math.sqrt(s.runningVar[i % s.d] + s.eps));
      const dgamma = Array.from({ length: s.d }, (_, j) => xHat.reduce((acc, v, i) => (i % s.d === j ? acc + v * dout[i] : acc), 0));
      expectRelClose(bn.dgamma, dgamma, tol.rel, "eval-mode dgamma");
    });
  });
});
