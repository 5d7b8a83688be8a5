// The baseline of bench/relu.mjs: a separate in-place SIMD ReLU after the batch norm, as a
// framework that does not fuse runs it. Four vectors per iteration, n a multiple of 16.
// Built by scripts/build-wasm.mjs, never shipped.

export function heapBase(): usize {
  return __heap_base;
}

/** a = max(a, 0), in place. */
export function reluForward(a: usize, n: i32): void {
  const zero = f32x4.splat(0);
  const end = a + (<usize>n << 2);
  for (; a < end; a += 64) {
    v128.store(a, f32x4.max(v128.load(a), zero));
    v128.store(a, f32x4.max(v128.load(a, 16), zero), 16);
    v128.store(a, f32x4.max(v128.load(a, 32), zero), 32);
    v128.store(a, f32x4.max(v128.load(a, 48), zero), 48);
  }
}

/** dout = out > 0 ? dout : 0, in place. */
export function reluBackward(dout: usize, out: usize, n: i32): void {
  const zero = f32x4.splat(0);
  const end = dout + (<usize>n << 2);
  for (; dout < end; dout += 64, out += 64) {
    v128.store(dout, v128.and(v128.load(dout), f32x4.gt(v128.load(out), zero)));
    v128.store(dout, v128.and(v128.load(dout, 16), f32x4.gt(v128.load(out, 16), zero)), 16);
    v128.store(dout, v128.and(v128.load(dout, 32), f32x4.gt(v128.load(out, 32), zero)), 32);
    v128.store(dout, v128.and(v128.load(dout, 48), f32x4.gt(v128.load(out, 48), zero)), 48);
  }
}
