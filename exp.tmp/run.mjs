import fs from 'fs';
const e = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(new URL('./k.wasm', import.meta.url)))).exports;
const mem = new Float32Array(e.memory.buffer); for (let i = 0; i < mem.length; i++) mem[i] = Math.random();
for (const bytes of [16384, 65536, 1 << 20, 4 << 20]) {
  const nvec = bytes / 16, p = 1 << 16, o = 32 << 20;
  for (const [name, f] of [['sum', () => e.sum(p, nvec, 1024)], ['seq', () => e.seq(p, nvec, 1024)], ['norm', () => e.norm(p, o, nvec)]]) {
    const reps = Math.round(2e8 / bytes); for (let i = 0; i < reps; i++) f();
    const t = []; for (let k = 0; k < 7; k++) { const s = process.hrtime.bigint(); for (let i = 0; i < reps; i++) f(); t.push(Number(process.hrtime.bigint() - s) / reps / nvec); }
    t.sort((a, b) => a - b); console.log(String(bytes).padEnd(9), name.padEnd(5), (t[3] * 4.1).toFixed(2), 'cycles/vector', (t[3] / 4).toFixed(4), 'ns/elem');
  }
}
