// Everything returned belongs to the caller; memory growth detaches old views of WASM
// memory but never changes results; steady training loops do not grow memory.
import { describe, expect, test } from "vitest";
import { type BNParam, type Backend, BatchNorm, batchnormBackwardAlt, batchnormForward, initSync } from "../src/index.js";
import { engine } from "../src/wasm.js";
import { expectClose, fixtures, randn, typed } from "./helpers.js";

const c = fixtures.cases.find((k) => k.name === "float32 64x67")!;

describe.each(["simd", "scalar", "js"] as Backend[])("%s backend", (backend) => {
  test("results survive later calls and a 64 MiB input that grows the memory", () => {
    initSync({ backend });
    const memory = engine().heap.memory;
    const x = typed("float32", c.x);
    const gamma = typed("float32", c.gamma);
    const beta = typed("float32", c.beta);
    const bnParam: BNParam = { mode: "train" };
    const first = batchnormForward(x, gamma, beta, bnParam);
    const grads = batchnormBackwardAlt(typed("float32", c.dout), first.cache!);
    const runningMean = bnParam.runningMean!;
    const snapshot = { out: first.out.slice(), dx: grads.dx.slice(), mean: first.cache!.mean.slice(), runningMean: runningMean.slice() };

    const bn = new BatchNorm(c.d);
    const ws = bn.workspace(c.n);
    ws.x.set(c.x);
    const heldView = ws.x;

    // 64 MiB of float32: 16 Mi values, (16384, 1024).
    const bytesBefore = memory.buffer.byteLength;
    const big = new Float32Array(16384 * 1024);
    big.set(randn(3, 1 << 16, 0, 1));
    const bigOut = batchnormForward(big, new Float32Array(1024).fill(1), new Float32Array(1024), { mode: "train" });
    expect(memory.buffer.byteLength).toBeGreaterThan(bytesBefore + 64 * 2 ** 20);
    expect(Number.isFinite(bigOut.out[12345])).toBe(true);

    for (let i = 0; i < 20; i++) batchnormForward(x.map((v) => v * i), gamma, beta, { mode: "train" });

    expect(first.out).toEqual(snapshot.out);
    expect(grads.dx).toEqual(snapshot.dx);
    expect(first.cache!.mean).toEqual(snapshot.mean);
    expect(bnParam.runningMean).toBe(runningMean);
    expect(runningMean).toEqual(snapshot.runningMean);
    // The old cache still gives the same gradients.
    expect(batchnormBackwardAlt(typed("float32", c.dout), first.cache!).dx).toEqual(snapshot.dx);

    // A view taken before the growth: detached for WebAssembly memory (the 'js' backend's
    // resizable buffer keeps it valid); the getter always gives a live view with the data.
    if (backend !== "js") {
      expect(heldView.length).toBe(0);
      expect(() => bn.forward(heldView)).toThrow(/detached/);
    }
    expectClose(ws.x, c.x, 0, "ws.x after growth");
    expectClose(ws.forward(), bn.forward(typed("float32", c.x)), 0, "workspace vs copying forward");
    ws.dispose();
  });

  test("20 000 train steps do not grow memory (layer, workspace and functional API)", () => {
    initSync({ backend });
    const memory = engine().heap.memory;
    const n = 16;
    const d = 8;
    const x = Float32Array.from(randn(1, n * d));
    const dout = Float32Array.from(randn(2, n * d));
    const gamma = new Float32Array(d).fill(1);
    const beta = new Float32Array(d);
    const bn = new BatchNorm(d);
    const ws = new BatchNorm(d).workspace(n);
    const bnParam: BNParam = { mode: "train" };
    const step = () => {
      bn.forward(x);
      bn.backward(dout);
      ws.x.set(x);
      ws.forward();
      ws.dout.set(dout);
      ws.backward();
      const { cache } = batchnormForward(x, gamma, beta, bnParam);
      batchnormBackwardAlt(dout, cache!);
    };
    step();
    const bytes = memory.buffer.byteLength;
    const allocated = engine().heap.allocatedBytes;
    for (let i = 0; i < 20_000; i++) step();
    expect(memory.buffer.byteLength).toBe(bytes);
    expect(engine().heap.allocatedBytes).toBe(allocated);
    ws.dispose();
    bn.dispose();
  });
});
