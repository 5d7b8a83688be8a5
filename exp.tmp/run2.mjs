import fs from 'fs';
const e = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(new URL('./k.wasm', import.meta.url)))).exports;
const mem = new Float32Array(e.memory.buffer); for (let i = 0; i < mem.length; i++) mem[i] = Math.random();
const x = 1 << 20, cPat = 1 << 16, p1 = (1 << 16) + 32768, p2 = p1 + 65536 ;
for (const [N, D] of [[512, 512], [256, 1024], [128, 2048], [64, 4096], [2048, 128]]) for (const RB of [4, 8, 16, 32]) for (const fn of ["blocked"]) {
  const nvec = N * D / 4;
  const f = () => e[fn](x, N, D, cPat, p1, p2, RB);
  const reps = Math.round(5e7 / (N * D)); for (let i = 0; i < reps; i++) f();
  const t = []; for (let k = 0; k < 7; k++) { const s = process.hrtime.bigint(); for (let i = 0; i < reps; i++) f(); t.push(Number(process.hrtime.bigint() - s) / reps / nvec); }
  t.sort((a, b) => a - b); console.log(`${N}x${D} RB=${RB} ${fn}`.padEnd(24), (t[3] * 4.1).toFixed(2), 'cycles/vector', (t[3] / 4).toFixed(4), 'ns/elem');
}
