// LayerNorm, GroupNorm and InstanceNorm: normalization with statistics per (item, group).
//
// Data (n, G, K, S), contiguous: statistic q = i·G + g covers the K·S values from q·K·S on;
// channel c = g·K + k owns the run of S values at (q·K + k)·S. LayerNorm is G = 1, K = D,
// S = 1 (gamma per value of a row); GroupNorm NCHW is K = C/G, S = H·W (gamma per run);
// InstanceNorm is K = 1. The statistics themselves (mean + meanLo, invStd per q) come from
// the batch norm's channels-first kernels on (1, n·G, K·S): each statistic is one "plane".
import { at, lanes, addLanesToF64x2, addToF64, madd } from "./columns";
import { ROW_BLOCK } from "./tuning";

/**
 * out = ((x − mean[q]) − meanLo[q])·invStd[q]·gamma[c] + beta[c]. Subtracting the exactly
 * representable mean first keeps x − mean exact near the mean (see trainConstants); the
 * last product and sum fused in the relaxed build (madd).
 */
export function groupApply<T>(
  x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize, beta: usize, out: usize,
): void {
  const stats = n * G;
  const runBytes = <usize>S * sizeof<T>();
  let p = x, o = out;
  for (let q = 0; q < stats; q++) {
    const m = load<T>(at<T>(mean, q)), lo = load<T>(at<T>(meanLo, q)), inv = load<T>(at<T>(invStd, q));
    const c0 = (q % G) * K;
    if (S == 1) {
      // One statistic's row: gamma and beta vary along it.
      let k = 0;
      if (ASC_FEATURE_SIMD) {
        const mv = v128.splat<T>(m), lv = v128.splat<T>(lo), iv = v128.splat<T>(inv);
        for (; k + lanes<T>() <= K; k += lanes<T>(), p += 16, o += 16) {
          const t = v128.mul<T>(v128.sub<T>(v128.sub<T>(v128.load(p), mv), lv), iv);
          v128.store(o, madd<T>(t, v128.load(at<T>(gamma, c0 + k)), v128.load(at<T>(beta, c0 + k))));
        }
      }
      for (; k < K; k++, p += sizeof<T>(), o += sizeof<T>()) {
        store<T>(o, (((load<T>(p) - m) - lo) * inv) * load<T>(at<T>(gamma, c0 + k)) + load<T>(at<T>(beta, c0 + k)));
      }
      continue;
    }
    for (let k = 0; k < K; k++) {
      const gc = load<T>(at<T>(gamma, c0 + k)), bc = load<T>(at<T>(beta, c0 + k));
      const end = p + runBytes;
      if (ASC_FEATURE_SIMD) {
        const mv = v128.splat<T>(m), lv = v128.splat<T>(lo), iv = v128.splat<T>(inv);
        const gv = v128.splat<T>(gc), bv = v128.splat<T>(bc);
        for (; p + 32 <= end; p += 32, o += 32) {
          const t0 = v128.mul<T>(v128.sub<T>(v128.sub<T>(v128.load(p), mv), lv), iv);
          const t1 = v128.mul<T>(v128.sub<T>(v128.sub<T>(v128.load(p, 16), mv), lv), iv);
          v128.store(o, madd<T>(t0, gv, bv));
          v128.store(o, madd<T>(t1, gv, bv), 16);
        }
      }
      for (; p < end; p += sizeof<T>(), o += sizeof<T>()) store<T>(o, (((load<T>(p) - m) - lo) * inv) * gc + bc);
    }
  }
}

/** dg64 += dgT, db64 += dbT (C values each), and the partial sums in T back to 0. */
function foldColumns<T>(dgT: usize, dbT: usize, C: i32, dg64: usize, db64: usize): void {
  for (let c = 0; c < C; c++) {
    store<f64>(at<f64>(dg64, c), load<f64>(at<f64>(dg64, c)) + <f64>load<T>(at<T>(dgT, c)));
    store<f64>(at<f64>(db64, c), load<f64>(at<f64>(db64, c)) + <f64>load<T>(at<T>(dbT, c)));
    store<T>(at<T>(dgT, c), <T>0);
    store<T>(at<T>(dbT, c), <T>0);
  }
}

/**
 * Backward, from dout, x and the forward's mean, meanLo, invStd per statistic:
 *   dbeta[c] = Σ dout, dgamma[c] = Σ dout·x̂ (over items and the run of c),
 *   dx = invStd·(g − mean(g) − x̂·mean(g·x̂)) with g = dout·gamma over each statistic's values.
 * Sums are taken in T over blocks of ROW_BLOCK vectors, then in f64; with S = 1 (a row per
 * statistic) the column sums in T over ROW_BLOCK items, then in f64. dx = 0: not computed.
 * work: 2·G·K f64 (the column sums), then 2·G·K T (S = 1: their partial sums), 16-byte aligned.
 */
export function groupBackward<T>(
  dout: usize, x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize,
  dx: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  const C = G * K;
  const dg64 = work;
  const db64 = work + ((<usize>C * 8 + 15) & ~(<usize>15));
  const colBytes = (<usize>C * sizeof<T>() + 15) & ~(<usize>15);
  const dgT = db64 + ((<usize>C * 8 + 15) & ~(<usize>15));
  const dbT = dgT + colBytes;
  memory.fill(dg64, 0, <usize>C << 3);
  memory.fill(db64, 0, <usize>C << 3);
  memory.fill(dgT, 0, colBytes << 1);
  const stats = n * G;
  const count = <f64>K * <f64>S;
  const statBytes = <usize>K * <usize>S * sizeof<T>();
  for (let q = 0; q < stats; q++) {
    const base = <usize>q * statBytes;
    const m = load<T>(at<T>(mean, q)), lo = load<T>(at<T>(meanLo, q)), inv = load<T>(at<T>(invStd, q));
    const c0 = (q % G) * K;
    // Pass 1: Σg and Σg·xc over the statistic (xc = x − mean), and the column sums.
    let sumG = 0.0, sumGXc = 0.0;
    if (S == 1) {
      let k = 0;
      if (ASC_FEATURE_SIMD) {
        const mv = v128.splat<T>(m), lv = v128.splat<T>(lo), iv = v128.splat<T>(inv);
        let f1 = f64x2.splat(0), f2 = f64x2.splat(0);
        while (k + lanes<T>() <= K) {
          let a = v128.splat<T>(<T>0), b = a;
          for (let step = 0; step < ROW_BLOCK && k + lanes<T>() <= K; step++, k += lanes<T>()) {
            const d = v128.load(dout + base + (<usize>k << alignof<T>()));
            const xc = v128.sub<T>(v128.sub<T>(v128.load(x + base + (<usize>k << alignof<T>())), mv), lv);
            const gv = v128.load(at<T>(gamma, c0 + k));
            const dxc = v128.mul<T>(d, xc);
            a = v128.add<T>(a, v128.mul<T>(d, gv));
            b = v128.add<T>(b, v128.mul<T>(dxc, gv));
            const pb = at<T>(dbT, c0 + k), pg = at<T>(dgT, c0 + k);
            v128.store(pb, v128.add<T>(v128.load(pb), d));
            v128.store(pg, v128.add<T>(v128.load(pg), v128.mul<T>(dxc, iv)));
          }
          f1 = addLanesToF64x2<T>(f1, a);
          f2 = addLanesToF64x2<T>(f2, b);
        }
        sumG = f64x2.extract_lane(f1, 0) + f64x2.extract_lane(f1, 1);
        sumGXc = f64x2.extract_lane(f2, 0) + f64x2.extract_lane(f2, 1);
      }
      for (; k < K; k++) {
        const d = <f64>load<T>(at<T>(dout + base, k));
        const xc = <f64>((load<T>(at<T>(x + base, k)) - m) - lo);
        const g = <f64>load<T>(at<T>(gamma, c0 + k));
        sumG += d * g;
        sumGXc += d * xc * g;
        store<T>(at<T>(dbT, c0 + k), load<T>(at<T>(dbT, c0 + k)) + <T>d);
        store<T>(at<T>(dgT, c0 + k), load<T>(at<T>(dgT, c0 + k)) + <T>(d * xc) * inv);
      }
      // Every ROW_BLOCK items, and after the last, the partial column sums into f64.
      if ((q + 1) % (G * ROW_BLOCK) == 0 || q + 1 == stats) foldColumns<T>(dgT, dbT, C, dg64, db64);
    } else {
      const runBytes = <usize>S * sizeof<T>();
      for (let k = 0; k < K; k++) {
        const off = base + <usize>k * runBytes;
        let pd = dout + off, px = x + off;
        const end = pd + runBytes;
        let sd = 0.0, sdx = 0.0;
        if (ASC_FEATURE_SIMD) {
          const mv = v128.splat<T>(m), lv = v128.splat<T>(lo);
          let f1 = f64x2.splat(0), f2 = f64x2.splat(0);
          while (pd + 32 <= end) {
            let a0 = v128.splat<T>(<T>0), a1 = a0, b0 = a0, b1 = a0;
            for (let step = 0; step < ROW_BLOCK && pd + 32 <= end; step++, pd += 32, px += 32) {
              const d0 = v128.load(pd), d1 = v128.load(pd, 16);
              a0 = v128.add<T>(a0, d0);
              a1 = v128.add<T>(a1, d1);
              b0 = v128.add<T>(b0, v128.mul<T>(d0, v128.sub<T>(v128.sub<T>(v128.load(px), mv), lv)));
              b1 = v128.add<T>(b1, v128.mul<T>(d1, v128.sub<T>(v128.sub<T>(v128.load(px, 16), mv), lv)));
            }
            f1 = addLanesToF64x2<T>(f1, v128.add<T>(a0, a1));
            f2 = addLanesToF64x2<T>(f2, v128.add<T>(b0, b1));
          }
          sd = f64x2.extract_lane(f1, 0) + f64x2.extract_lane(f1, 1);
          sdx = f64x2.extract_lane(f2, 0) + f64x2.extract_lane(f2, 1);
        }
        for (; pd < end; pd += sizeof<T>(), px += sizeof<T>()) {
          const d = <f64>load<T>(pd);
          sd += d;
          sdx += d * <f64>((load<T>(px) - m) - lo);
        }
        const g = <f64>load<T>(at<T>(gamma, c0 + k));
        sumG += g * sd;
        sumGXc += g * sdx;
        store<f64>(at<f64>(db64, c0 + k), load<f64>(at<f64>(db64, c0 + k)) + sd);
        store<f64>(at<f64>(dg64, c0 + k), load<f64>(at<f64>(dg64, c0 + k)) + sdx * <f64>inv);
      }
    }
    if (!dx) continue;
    // Pass 2: dx = A·(g − meanG) − B·xc with A = invStd, B = invStd³·mean(g·xc).
    const inv64 = <f64>inv;
    const A = <T>inv64;
    const AM = <T>(inv64 * (sumG / count));
    const B = <T>(inv64 * inv64 * inv64 * (sumGXc / count));
    if (S == 1) {
      let k = 0;
      if (ASC_FEATURE_SIMD) {
        const av = v128.splat<T>(A), amv = v128.splat<T>(AM), bv = v128.splat<T>(B);
        const mv = v128.splat<T>(m), lv = v128.splat<T>(lo);
        for (; k + lanes<T>() <= K; k += lanes<T>()) {
          const off = base + (<usize>k << alignof<T>());
          const xc = v128.sub<T>(v128.sub<T>(v128.load(x + off), mv), lv);
          const g = v128.mul<T>(v128.load(dout + off), v128.load(at<T>(gamma, c0 + k)));
          v128.store(dx + off, v128.sub<T>(v128.sub<T>(v128.mul<T>(av, g), amv), v128.mul<T>(bv, xc)));
        }
      }
      for (; k < K; k++) {
        const off = base + (<usize>k << alignof<T>());
        const xc = (load<T>(x + off) - m) - lo;
        store<T>(dx + off, (A * (load<T>(dout + off) * load<T>(at<T>(gamma, c0 + k))) - AM) - B * xc);
      }
    } else {
      const runBytes = <usize>S * sizeof<T>();
      for (let k = 0; k < K; k++) {
        const off = base + <usize>k * runBytes;
        const AG = <T>(inv64 * <f64>load<T>(at<T>(gamma, c0 + k)));
        let pd = dout + off, px = x + off, po = dx + off;
        const end = pd + runBytes;
        if (ASC_FEATURE_SIMD) {
          const agv = v128.splat<T>(AG), amv = v128.splat<T>(AM), bv = v128.splat<T>(B);
          const mv = v128.splat<T>(m), lv = v128.splat<T>(lo);
          for (; pd + 32 <= end; pd += 32, px += 32, po += 32) {
            const x0 = v128.sub<T>(v128.sub<T>(v128.load(px), mv), lv);
            const x1 = v128.sub<T>(v128.sub<T>(v128.load(px, 16), mv), lv);
            v128.store(po, v128.sub<T>(v128.sub<T>(v128.mul<T>(agv, v128.load(pd)), amv), v128.mul<T>(bv, x0)));
            v128.store(po, v128.sub<T>(v128.sub<T>(v128.mul<T>(agv, v128.load(pd, 16)), amv), v128.mul<T>(bv, x1)), 16);
          }
        }
        for (; pd < end; pd += sizeof<T>(), px += sizeof<T>(), po += sizeof<T>()) {
          store<T>(po, (AG * load<T>(pd) - AM) - B * ((load<T>(px) - m) - lo));
        }
      }
    }
  }
  for (let c = 0; c < C; c++) {
    if (dgamma) store<T>(at<T>(dgamma, c), <T>load<f64>(at<f64>(dg64, c)));
    if (dbeta) store<T>(at<T>(dbeta, c), <T>load<f64>(at<f64>(db64, c)));
  }
}
