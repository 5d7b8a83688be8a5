// synthetic: sequential shifted sums over n vectors, c in register, 4 chains
export function seq(p: usize, nvec: i32, out: usize): void {
  const c = f32x4.splat(2.0);
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  for (let i = 0; i < nvec; i += 4, p += 64) {
    const v0 = f32x4.sub(v128.load(p), c);
    const v1 = f32x4.sub(v128.load(p, 16), c);
    const v2 = f32x4.sub(v128.load(p, 32), c);
    const v3 = f32x4.sub(v128.load(p, 48), c);
    a0 = f32x4.add(a0, v0); a1 = f32x4.add(a1, v1); a2 = f32x4.add(a2, v2); a3 = f32x4.add(a3, v3);
    b0 = f32x4.add(b0, f32x4.mul(v0, v0)); b1 = f32x4.add(b1, f32x4.mul(v1, v1));
    b2 = f32x4.add(b2, f32x4.mul(v2, v2)); b3 = f32x4.add(b3, f32x4.mul(v3, v3));
  }
  v128.store(out, f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  v128.store(out, f32x4.add(f32x4.add(b0, b1), f32x4.add(b2, b3)), 16);
}
// sequential normalize: out = (x - c) * s + b with constants in registers
export function norm(p: usize, o: usize, nvec: i32): void {
  const c = f32x4.splat(2.0), s = f32x4.splat(0.5), b = f32x4.splat(0.1);
  for (let i = 0; i < nvec; i += 4, p += 64, o += 64) {
    v128.store(o, f32x4.add(f32x4.mul(f32x4.sub(v128.load(p), c), s), b));
    v128.store(o, f32x4.add(f32x4.mul(f32x4.sub(v128.load(p, 16), c), s), b), 16);
    v128.store(o, f32x4.add(f32x4.mul(f32x4.sub(v128.load(p, 32), c), s), b), 32);
    v128.store(o, f32x4.add(f32x4.mul(f32x4.sub(v128.load(p, 48), c), s), b), 48);
  }
}
// copy (read + write) baseline
export function sum(p: usize, nvec: i32, out: usize): void {
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  for (let i = 0; i < nvec; i += 4, p += 64) {
    a0 = f32x4.add(a0, v128.load(p)); a1 = f32x4.add(a1, v128.load(p, 16)); a2 = f32x4.add(a2, v128.load(p, 32)); a3 = f32x4.add(a3, v128.load(p, 48));
  }
  v128.store(out, f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
}
// our structure: blocks of 16 rows, 2 vectors x 2 rows per step, fold per (block, k) into f64
@inline function addToF64(acc: usize, v: v128): void {
  v128.store(acc, f64x2.add(v128.load(acc), f64x2.promote_low_f32x4(v)));
  const high = v128.shuffle<f32>(v, v, 2, 3, 0, 1);
  v128.store(acc, f64x2.add(v128.load(acc, 16), f64x2.promote_low_f32x4(high)), 16);
}
export function blocked(x: usize, rowsTotal: i32, E: i32, cPat: usize, p1: usize, p2: usize, RB: i32): void {
  const P = E / 4; const G = <usize>E * 4; const zero = f32x4.splat(0);
  for (let g0 = 0; g0 < rowsTotal; g0 += RB) {
    const rows = min(RB, rowsTotal - g0);
    const block = x + <usize>g0 * G;
    const pairs = rows >> 1;
    for (let k = 0; k + 2 <= P; k += 2) {
      const off = <usize>k << 4;
      const c0 = v128.load(cPat + off); const c1 = v128.load(cPat + off, 16);
      let a0 = zero, a1 = zero, a2 = zero, a3 = zero, b0 = zero, b1 = zero, b2 = zero, b3 = zero;
      let p = block + off;
      for (let r = 0; r < pairs; r++, p += 2 * G) {
        const q = p + G;
        const v0 = f32x4.sub(v128.load(p), c0); const v1 = f32x4.sub(v128.load(p, 16), c1);
        const v2 = f32x4.sub(v128.load(q), c0); const v3 = f32x4.sub(v128.load(q, 16), c1);
        a0 = f32x4.add(a0, v0); a1 = f32x4.add(a1, v1); a2 = f32x4.add(a2, v2); a3 = f32x4.add(a3, v3);
        b0 = f32x4.add(b0, f32x4.mul(v0, v0)); b1 = f32x4.add(b1, f32x4.mul(v1, v1));
        b2 = f32x4.add(b2, f32x4.mul(v2, v2)); b3 = f32x4.add(b3, f32x4.mul(v3, v3));
      }
      const q1 = p1 + (<usize>k << 3); const q2 = p2 + (<usize>k << 3);
      addToF64(q1, f32x4.add(a0, a2)); addToF64(q1 + 32, f32x4.add(a1, a3));
      addToF64(q2, f32x4.add(b0, b2)); addToF64(q2 + 32, f32x4.add(b1, b3));
    }
  }
}
export function lines2(x: usize, rowsTotal: i32, E: i32, cPat: usize, p1: usize, p2: usize, RB: i32): void {
  const P = E / 4; const G = <usize>E * 4; const zero = f32x4.splat(0);
  for (let g0 = 0; g0 < rowsTotal; g0 += RB) {
    const rows = min(RB, rowsTotal - g0);
    const block = x + <usize>g0 * G;
    const pairs = rows >> 1;
    for (let k = 0; k + 4 <= P; k += 4) {
      const off = <usize>k << 4;
      const c = cPat + off;
      let a0 = zero, a1 = zero, a2 = zero, a3 = zero, b0 = zero, b1 = zero, b2 = zero, b3 = zero;
      let p = block + off;
      for (let r = 0; r < pairs; r++, p += 2 * G) {
        const q = p + G;
        let u = v128.load(c);
        let v0 = f32x4.sub(v128.load(p), u); let v1 = f32x4.sub(v128.load(q), u);
        a0 = f32x4.add(a0, f32x4.add(v0, v1)); b0 = f32x4.add(b0, f32x4.add(f32x4.mul(v0, v0), f32x4.mul(v1, v1)));
        u = v128.load(c, 16);
        v0 = f32x4.sub(v128.load(p, 16), u); v1 = f32x4.sub(v128.load(q, 16), u);
        a1 = f32x4.add(a1, f32x4.add(v0, v1)); b1 = f32x4.add(b1, f32x4.add(f32x4.mul(v0, v0), f32x4.mul(v1, v1)));
        u = v128.load(c, 32);
        v0 = f32x4.sub(v128.load(p, 32), u); v1 = f32x4.sub(v128.load(q, 32), u);
        a2 = f32x4.add(a2, f32x4.add(v0, v1)); b2 = f32x4.add(b2, f32x4.add(f32x4.mul(v0, v0), f32x4.mul(v1, v1)));
        u = v128.load(c, 48);
        v0 = f32x4.sub(v128.load(p, 48), u); v1 = f32x4.sub(v128.load(q, 48), u);
        a3 = f32x4.add(a3, f32x4.add(v0, v1)); b3 = f32x4.add(b3, f32x4.add(f32x4.mul(v0, v0), f32x4.mul(v1, v1)));
      }
      const q1 = p1 + (<usize>k << 3); const q2 = p2 + (<usize>k << 3);
      addToF64(q1, a0); addToF64(q1 + 32, a1); addToF64(q1 + 64, a2); addToF64(q1 + 96, a3);
      addToF64(q2, b0); addToF64(q2 + 32, b1); addToF64(q2 + 64, b2); addToF64(q2 + 96, b3);
    }
  }
}
