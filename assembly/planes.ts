// Kernels for channels-first data (N, C, S): channel c of item i is the contiguous run of S
// values at base + ((i·C + c)·S)·sizeof<T>() (S = H·W for NCHW images, L for (N, C, L)).
// Per-channel statistics reduce contiguous runs, so the SIMD loops need no patterns or
// transposes. The numerics follow statistics.ts: values shifted by a per-channel c, summed
// in T over at most ROW_BLOCK vectors per lane, then added into f64.
import { lanes, at } from "./columns";
import { ROW_BLOCK } from "./tuning";

/** acc + the lanes of v (a vector of T), as two f64 lanes. */
// @ts-ignore: decorator
@inline function addLanesToF64x2<T>(acc: v128, v: v128): v128 {
  if (sizeof<T>() == 4) {
    const low = f64x2.promote_low_f32x4(v);
    const high = f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1));
    return f64x2.add(acc, f64x2.add(low, high));
  }
  return f64x2.add(acc, v);
}

/**
 * s1[c] = Σ (x − k[c]), s2[c] = Σ (x − k[c])² over every run of channel c (f64). Runs are
 * visited in memory order (item by item), so the pass streams through x.
 */
export function planeShiftedSums<T>(x: usize, n: i32, d: i32, S: i32, k: usize, s1: usize, s2: usize): void {
  const L = lanes<T>();
  const runBytes = <usize>S * sizeof<T>();
  memory.fill(s1, 0, <usize>d << 3);
  memory.fill(s2, 0, <usize>d << 3);
  let p = x;
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < d; ch++) {
      const kc = load<T>(at<T>(k, ch));
      const end = p + runBytes;
      let sum1 = 0.0;
      let sum2 = 0.0;
      if (ASC_FEATURE_SIMD) {
        // Blocks of ROW_BLOCK steps of four vectors summed in T; each block's four partial
        // sums added together in T, then into f64 lanes, reduced once per run.
        const zero = v128.splat<T>(<T>0);
        const kv = v128.splat<T>(kc);
        let f1 = f64x2.splat(0);
        let f2 = f64x2.splat(0);
        while (p + 64 <= end) {
          let a0 = zero, a1 = zero, a2 = zero, a3 = zero;
          let b0 = zero, b1 = zero, b2 = zero, b3 = zero;
          for (let step = 0; step < ROW_BLOCK && p + 64 <= end; step++, p += 64) {
            const v0 = v128.sub<T>(v128.load(p), kv);
            const v1 = v128.sub<T>(v128.load(p, 16), kv);
            const v2 = v128.sub<T>(v128.load(p, 32), kv);
            const v3 = v128.sub<T>(v128.load(p, 48), kv);
            a0 = v128.add<T>(a0, v0);
            a1 = v128.add<T>(a1, v1);
            a2 = v128.add<T>(a2, v2);
            a3 = v128.add<T>(a3, v3);
            b0 = v128.add<T>(b0, v128.mul<T>(v0, v0));
            b1 = v128.add<T>(b1, v128.mul<T>(v1, v1));
            b2 = v128.add<T>(b2, v128.mul<T>(v2, v2));
            b3 = v128.add<T>(b3, v128.mul<T>(v3, v3));
          }
          f1 = addLanesToF64x2<T>(f1, v128.add<T>(v128.add<T>(a0, a1), v128.add<T>(a2, a3)));
          f2 = addLanesToF64x2<T>(f2, v128.add<T>(v128.add<T>(b0, b1), v128.add<T>(b2, b3)));
        }
        sum1 += f64x2.extract_lane(f1, 0) + f64x2.extract_lane(f1, 1);
        sum2 += f64x2.extract_lane(f2, 0) + f64x2.extract_lane(f2, 1);
      }
      // The rest of the run (and all of it in the scalar build), ROW_BLOCK values at a time.
      while (p < end) {
        let a: T = 0;
        let b: T = 0;
        for (let step = 0; step < ROW_BLOCK * L && p < end; step++, p += sizeof<T>()) {
          const v: T = load<T>(p) - kc;
          a += v;
          b += v * v;
        }
        sum1 += <f64>a;
        sum2 += <f64>b;
      }
      store<f64>(at<f64>(s1, ch), load<f64>(at<f64>(s1, ch)) + sum1);
      store<f64>(at<f64>(s2, ch), load<f64>(at<f64>(s2, ch)) + sum2);
    }
  }
}

/** out = (x − center[c])·scale[c] + bias[c] over every run of channel c. */
export function planeAffine<T>(x: usize, n: i32, d: i32, S: i32, center: usize, scale: usize, bias: usize, out: usize): void {
  const runBytes = <usize>S * sizeof<T>();
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < d; ch++) {
      const c = load<T>(at<T>(center, ch));
      const s = load<T>(at<T>(scale, ch));
      const b = load<T>(at<T>(bias, ch));
      const offset = (<usize>i * d + ch) * runBytes;
      let p = x + offset;
      let q = out + offset;
      const end = p + runBytes;
      if (ASC_FEATURE_SIMD) {
        const cv = v128.splat<T>(c);
        const sv = v128.splat<T>(s);
        const bv = v128.splat<T>(b);
        for (; p + 32 <= end; p += 32, q += 32) {
          v128.store(q, v128.add<T>(v128.mul<T>(v128.sub<T>(v128.load(p), cv), sv), bv));
          v128.store(q, v128.add<T>(v128.mul<T>(v128.sub<T>(v128.load(p, 16), cv), sv), bv), 16);
        }
      }
      for (; p < end; p += sizeof<T>(), q += sizeof<T>()) store<T>(q, (load<T>(p) - c) * s + b);
    }
  }
}

/** s0[c] = Σ dout, s1[c] = Σ dout·(x − k[c]) over every run of channel c (f64), in memory order. */
export function planeBackwardSums<T>(dout: usize, x: usize, n: i32, d: i32, S: i32, k: usize, s0: usize, s1: usize): void {
  const L = lanes<T>();
  const runBytes = <usize>S * sizeof<T>();
  memory.fill(s0, 0, <usize>d << 3);
  memory.fill(s1, 0, <usize>d << 3);
  let p: usize = 0;
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < d; ch++) {
      const kc = load<T>(at<T>(k, ch));
      const end = p + runBytes;
      let sum0 = 0.0;
      let sum1 = 0.0;
      if (ASC_FEATURE_SIMD) {
        const zero = v128.splat<T>(<T>0);
        const kv = v128.splat<T>(kc);
        let f0 = f64x2.splat(0);
        let f1 = f64x2.splat(0);
        while (p + 32 <= end) {
          let a0 = zero, a1 = zero, b0 = zero, b1 = zero;
          for (let step = 0; step < ROW_BLOCK && p + 32 <= end; step++, p += 32) {
            const g0 = v128.load(dout + p);
            const g1 = v128.load(dout + p, 16);
            a0 = v128.add<T>(a0, g0);
            a1 = v128.add<T>(a1, g1);
            b0 = v128.add<T>(b0, v128.mul<T>(g0, v128.sub<T>(v128.load(x + p), kv)));
            b1 = v128.add<T>(b1, v128.mul<T>(g1, v128.sub<T>(v128.load(x + p, 16), kv)));
          }
          f0 = addLanesToF64x2<T>(f0, v128.add<T>(a0, a1));
          f1 = addLanesToF64x2<T>(f1, v128.add<T>(b0, b1));
        }
        sum0 += f64x2.extract_lane(f0, 0) + f64x2.extract_lane(f0, 1);
        sum1 += f64x2.extract_lane(f1, 0) + f64x2.extract_lane(f1, 1);
      }
      while (p < end) {
        let a: T = 0;
        let b: T = 0;
        for (let step = 0; step < ROW_BLOCK * L && p < end; step++, p += sizeof<T>()) {
          const g = load<T>(dout + p);
          a += g;
          b += g * (load<T>(x + p) - kc);
        }
        sum0 += <f64>a;
        sum1 += <f64>b;
      }
      store<f64>(at<f64>(s0, ch), load<f64>(at<f64>(s0, ch)) + sum0);
      store<f64>(at<f64>(s1, ch), load<f64>(at<f64>(s1, ch)) + sum1);
    }
  }
}

/** dx = a[c]·((dout − m[c]) − b[c]·(x − k[c])) over every run of channel c. */
export function planeBackwardApply<T>(dout: usize, x: usize, n: i32, d: i32, S: i32, k: usize, a: usize, m: usize, b: usize, dx: usize): void {
  const runBytes = <usize>S * sizeof<T>();
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < d; ch++) {
      const kc = load<T>(at<T>(k, ch));
      const ac = load<T>(at<T>(a, ch));
      const mc = load<T>(at<T>(m, ch));
      const bc = load<T>(at<T>(b, ch));
      let p = (<usize>i * d + ch) * runBytes;
      const end = p + runBytes;
      if (ASC_FEATURE_SIMD) {
        const kv = v128.splat<T>(kc);
        const av = v128.splat<T>(ac);
        const mv = v128.splat<T>(mc);
        const bv = v128.splat<T>(bc);
        for (; p + 16 <= end; p += 16) {
          const xc = v128.sub<T>(v128.load(x + p), kv);
          const t = v128.sub<T>(v128.sub<T>(v128.load(dout + p), mv), v128.mul<T>(bv, xc));
          v128.store(dx + p, v128.mul<T>(av, t));
        }
      }
      for (; p < end; p += sizeof<T>()) {
        store<T>(dx + p, ac * ((load<T>(dout + p) - mc) - bc * (load<T>(x + p) - kc)));
      }
    }
  }
}
