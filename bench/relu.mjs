// Fused batch norm + ReLU (activation: 'relu') against batch norm followed by a separate
// in-place SIMD ReLU pass (bench/assembly/relu.ts), forward and backward, on the zero-copy
// workspace path (nothing copied but O(C) parameters), float32, SIMD backend. With
// BASE_DIST=path/to/other/dist, the plain (no activation) forward and backward of that build
// are timed beside this one's, to check that the plain path kept its speed.
// Interleaved in one process, medians of REPS timings. Usage: node bench/relu.mjs
import { readFileSync } from "node:fs";
import { BatchNorm, initSync } from "../dist/index.js";
import { interleaved } from "./interleaved.mjs";

const REPS = Number(process.env.REPS ?? 15);
const SHAPES = [[8192, 1024], [8, 256, 56, 56], [256, 1024]];

initSync({ backend: "simd" });

function workspaceOf(Layer, shape, activation) {
  const layer = new Layer(shape[1], activation ? { activation } : {});
  const ws = layer.workspace(shape);
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 4 - 1.5;
  const x = ws.x;
  for (let i = 0; i < x.length; i++) x[i] = random();
  const dout = ws.dout;
  for (let i = 0; i < dout.length; i++) dout[i] = random();
  return { layer, ws };
}

const base = process.env.BASE_DIST ? await import(new URL(`file://${process.env.BASE_DIST}/index.js`)) : null;
if (base) base.initSync({ backend: "simd" });

console.log(`REPS = ${REPS}, medians; machine shared with other jobs`);
for (const shape of SHAPES) {
  const fused = workspaceOf(BatchNorm, shape, "relu");
  const plain = workspaceOf(BatchNorm, shape, null);
  const old = base ? workspaceOf(base.BatchNorm, shape, null) : null;
  // The separate pass runs on the package's memory (after every allocation: no growth below).
  const memory = plain.layer.engine.heap.memory;
  const pass = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(new URL("../build/relu-pass.wasm", import.meta.url))), { env: { memory } }).exports;
  const size = plain.ws.size;
  if (size % 16) throw new Error("size must be a multiple of 16");
  const separateForward = () => {
    plain.ws.forward();
    pass.reluForward(plain.ws.out.byteOffset, size);
  };
  const separateBackward = () => {
    pass.reluBackward(plain.ws.dout.byteOffset, plain.ws.out.byteOffset, size);
    plain.ws.backward();
  };
  // Same results (within float32 rounding of the scale: see docs/fusion.md).
  fused.ws.forward();
  separateForward();
  let worst = 0;
  for (let i = 0; i < size; i++) worst = Math.max(worst, Math.abs(fused.ws.out[i] - plain.ws.out[i]));
  fused.ws.backward();
  separateBackward();
  let worstDx = 0;
  for (let i = 0; i < size; i++) worstDx = Math.max(worstDx, Math.abs(fused.ws.dx[i] - plain.ws.dx[i]));
  const calls = Math.max(1, Math.round(2e7 / size));
  const fwd = await interleaved([() => fused.ws.forward(), separateForward, () => plain.ws.forward(), ...(old ? [() => old.ws.forward()] : [])], REPS, calls);
  fused.ws.forward();
  plain.ws.forward();
  old?.ws.forward();
  const bwd = await interleaved([() => fused.ws.backward(), separateBackward, () => plain.ws.backward(), ...(old ? [() => old.ws.backward()] : [])], REPS, calls);
  const f = (ms) => ms.toFixed(3);
  console.log(`[${shape.join(", ")}] (max |Δout| ${worst.toExponential(1)}, max |Δdx| ${worstDx.toExponential(1)})`);
  console.log(`  forward:  fused ${f(fwd[0])} ms, BN + ReLU pass ${f(fwd[1])} ms: ${(fwd[1] / fwd[0]).toFixed(2)}x; plain BN ${f(fwd[2])} ms${old ? `, plain BN of BASE_DIST ${f(fwd[3])} ms (${(fwd[3] / fwd[2]).toFixed(2)}x)` : ""}`);
  console.log(`  backward: fused ${f(bwd[0])} ms, ReLU pass + BN ${f(bwd[1])} ms: ${(bwd[1] / bwd[0]).toFixed(2)}x; plain BN ${f(bwd[2])} ms${old ? `, plain BN of BASE_DIST ${f(bwd[3])} ms (${(bwd[3] / bwd[2]).toFixed(2)}x)` : ""}`);
  for (const w of [fused, plain, old]) w?.ws.dispose();
}
