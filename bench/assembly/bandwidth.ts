// Probes for the benchmarks: the fastest streaming loops WebAssembly SIMD can run (read-sum,
// copy, triad), four vectors per iteration, n a multiple of 16; and the adders' throughput.

export function heapBase(): usize {
  return __heap_base;
}

export function readSum(p: usize, n: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const end = p + (<usize>n << 2);
  for (; p < end; p += 64) {
    a0 = f32x4.add(a0, v128.load(p));
    a1 = f32x4.add(a1, v128.load(p, 16));
    a2 = f32x4.add(a2, v128.load(p, 32));
    a3 = f32x4.add(a3, v128.load(p, 48));
  }
  const s = f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}

export function copy(dst: usize, src: usize, n: i32): void {
  const end = src + (<usize>n << 2);
  for (; src < end; src += 64, dst += 64) {
    v128.store(dst, v128.load(src));
    v128.store(dst, v128.load(src, 16), 16);
    v128.store(dst, v128.load(src, 32), 32);
    v128.store(dst, v128.load(src, 48), 48);
  }
}

/** a = b + s·c */
export function triad(a: usize, b: usize, c: usize, s: f32, n: i32): void {
  const sv = f32x4.splat(s);
  const end = a + (<usize>n << 2);
  for (; a < end; a += 64, b += 64, c += 64) {
    v128.store(a, f32x4.add(v128.load(b), f32x4.mul(sv, v128.load(c))));
    v128.store(a, f32x4.add(v128.load(b, 16), f32x4.mul(sv, v128.load(c, 16))), 16);
    v128.store(a, f32x4.add(v128.load(b, 32), f32x4.mul(sv, v128.load(c, 32))), 32);
    v128.store(a, f32x4.add(v128.load(b, 48), f32x4.mul(sv, v128.load(c, 48))), 48);
  }
}

/**
 * `iterations` × 32 f32x4 additions in eight independent chains, nothing else: the rate at which
 * the floating-point adders take vector additions and subtractions.
 */
export function addChains(iterations: i32): f32 {
  const one = f32x4.splat(1e-7);
  let a0 = one, a1 = one, a2 = one, a3 = one, a4 = one, a5 = one, a6 = one, a7 = one;
  for (let i = 0; i < iterations; i++) {
    for (let u = 0; u < 4; u++) {
      a0 = f32x4.add(a0, one);
      a1 = f32x4.add(a1, one);
      a2 = f32x4.add(a2, one);
      a3 = f32x4.add(a3, one);
      a4 = f32x4.add(a4, one);
      a5 = f32x4.add(a5, one);
      a6 = f32x4.add(a6, one);
      a7 = f32x4.add(a7, one);
    }
  }
  const s = f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7)));
  return f32x4.extract_lane(s, 0);
}

// The loops `reps` times in one call: the two-thread probe (bench/bandwidth.mjs) gives each
// thread one such job, so that a fork/join (tens of µs) is paid once per timing, not per pass.

export function readSumRepeat(p: usize, n: i32, reps: i32): f32 {
  let s: f32 = 0;
  for (let r = 0; r < reps; r++) s += readSum(p, n);
  return s;
}

export function copyRepeat(dst: usize, src: usize, n: i32, reps: i32): void {
  for (let r = 0; r < reps; r++) copy(dst, src, n);
}

export function triadRepeat(a: usize, b: usize, c: usize, s: f32, n: i32, reps: i32): void {
  for (let r = 0; r < reps; r++) triad(a, b, c, s, n);
}
