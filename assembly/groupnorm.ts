// GroupNorm and InstanceNorm on channels-last data (NHWC, NLC), in place of a transpose.
//
// Data (n, S, G, K): item i holds S positions of C = G·K values; channel c = g·K + k of
// position s is value (i·S + s)·C + c. Statistic q = i·G + g covers K adjacent values at
// each of the item's S positions. Item by item, the (S, C) block is the batch norm's
// row-major (rows, columns) case: the statistics are its shifted column sums with one shift
// per group, added up per group; the apply and the backward walk the block as flat groups of
// E = groupLength(C) values (a multiple of C and of the lanes; see columns.ts), with the
// per-channel constants of the item repeated into E-long patterns.
import { at, lanes, addToF64, groupLength, foldPattern, madd } from "./columns";
import { HEAD_ROWS, RESHIFT_RATIO, shiftedSums, sumError } from "./statistics";
import { ROW_BLOCK } from "./tuning";
import { MAP_ARRAYS, after, columnArray } from "./work";

/**
 * The moments of each statistic: mean and variance (f64) and, for f64 data, meanLo, written
 * where trainMoments writes them for d = n·G columns, so that trainConstants follows as for
 * channels-first data. The shift of a group starts as the mean of its first HEAD_ROWS
 * positions and is moved to the mean for a second pass when it was far (as columnMeanVar).
 * work: trainMoments' arrays for n·G columns, then the shifts (C of T), two sums (C f64
 * each) and shiftedSums' scratch for (S, C).
 */
export function groupMomentsChannelsLast<T>(x: usize, n: i32, G: i32, K: i32, S: i32, work: usize): void {
  const R = n * G, C = G * K;
  const mean64 = columnArray<T>(work, R, MAP_ARRAYS);
  const var64 = after(mean64, <usize>R << 3);
  const lo64 = after(var64, <usize>R << 3);
  const shift = after(after(lo64, <usize>R << 3), <usize>R << 3);
  const s1 = after(shift, <usize>C * sizeof<T>());
  const s2 = after(s1, <usize>C << 3);
  const scratch = after(s2, <usize>C << 3);
  const rowBytes = <usize>C * sizeof<T>();
  const invCount = 1.0 / (<f64>K * <f64>S);
  const head = min(S, HEAD_ROWS);
  for (let i = 0; i < n; i++) {
    const item = x + <usize>i * <usize>S * rowBytes;
    for (let g = 0; g < G; g++) {
      let sum = 0.0;
      for (let s = 0; s < head; s++) {
        for (let k = 0; k < K; k++) sum += <f64>load<T>(at<T>(item + <usize>s * rowBytes, g * K + k));
      }
      const c = <T>(sum / (<f64>head * <f64>K));
      for (let k = 0; k < K; k++) store<T>(at<T>(shift, g * K + k), c);
    }
    for (let pass = 0; pass < 2; pass++) {
      shiftedSums<T>(item, S, C, shift, s1, s2, scratch);
      let reshift = false;
      for (let g = 0; g < G; g++) {
        let a = 0.0, b = 0.0;
        for (let k = 0; k < K; k++) {
          a += load<f64>(at<f64>(s1, g * K + k));
          b += load<f64>(at<f64>(s2, g * K + k));
        }
        const m = a * invCount;
        const v = max(b * invCount - m * m, 0.0);
        const c = <f64>load<T>(at<T>(shift, g * K));
        const q = i * G + g;
        store<f64>(at<f64>(mean64, q), c + m);
        if (sizeof<T>() == 8) store<f64>(at<f64>(lo64, q), sumError(c, m, c + m));
        store<f64>(at<f64>(var64, q), v);
        if (!(v < Infinity)) {
          // Block sums of squares in T overflowed (values ~1e18 from the shift in f32), or
          // a NaN: the group again in f64, two passes (a NaN stays NaN).
          exactGroup<T>(item, S, C, g * K, K, at<f64>(mean64, q), at<f64>(var64, q));
          if (sizeof<T>() == 8) store<f64>(at<f64>(lo64, q), 0);
        } else if (m * m > RESHIFT_RATIO * v) {
          reshift = true;
        }
        const mu = <T>load<f64>(at<f64>(mean64, q));
        for (let k = 0; k < K; k++) store<T>(at<T>(shift, g * K + k), mu);
      }
      if (!reshift) break;
    }
  }
}

/** The mean and biased variance (f64) of K adjacent values from channel c0 on at each of S positions. */
function exactGroup<T>(item: usize, S: i32, C: i32, c0: i32, K: i32, mean: usize, variance: usize): void {
  const rowBytes = <usize>C * sizeof<T>();
  const count = <f64>K * <f64>S;
  let sum = 0.0;
  for (let s = 0; s < S; s++) {
    for (let k = 0; k < K; k++) sum += <f64>load<T>(at<T>(item + <usize>s * rowBytes, c0 + k));
  }
  const mu = sum / count;
  let t1 = 0.0, t2 = 0.0;
  for (let s = 0; s < S; s++) {
    for (let k = 0; k < K; k++) {
      const v = <f64>load<T>(at<T>(item + <usize>s * rowBytes, c0 + k)) - mu;
      t1 += v;
      t2 += v * v;
    }
  }
  const m = t1 / count;
  store<f64>(mean, mu + m);
  store<f64>(variance, max(t2 / count - m * m, 0.0));
}

/** into[e] = the value of statistic i·G + (e % C) / K in `stat`, for e < E: a pattern of the item's groups. */
function groupPattern<T>(stat: usize, i: i32, G: i32, K: i32, E: i32, into: usize): void {
  const C = G * K;
  for (let e = 0; e < E; e++) store<T>(at<T>(into, e), load<T>(at<T>(stat, i * G + (e % C) / K)));
}

/** into[e] = column[e % C] for e < E. */
function channelPattern<T>(column: usize, C: i32, E: i32, into: usize): void {
  for (let e = 0; e < E; e++) store<T>(at<T>(into, e), load<T>(at<T>(column, e % C)));
}

/**
 * out = ((x − mean[q]) − meanLo[q])·invStd[q]·gamma[c] + beta[c], the operations of
 * groupApply, for channels-last data. work: five patterns of E = groupLength(C) values of T.
 */
export function groupApplyChannelsLast<T>(
  x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize, beta: usize, out: usize, work: usize,
): void {
  const C = G * K;
  const E = groupLength<T>(C);
  const patBytes = <usize>E * sizeof<T>();
  const pm = work, pl = after(pm, patBytes), pi = after(pl, patBytes), pg = after(pi, patBytes), pb = after(pg, patBytes);
  channelPattern<T>(gamma, C, E, pg);
  channelPattern<T>(beta, C, E, pb);
  const itemValues = <i64>S * <i64>C;
  const groups = <i32>(itemValues / <i64>E);
  const tail = <i32>(itemValues - <i64>groups * <i64>E);
  let p = x, o = out;
  for (let i = 0; i < n; i++) {
    groupPattern<T>(mean, i, G, K, E, pm);
    groupPattern<T>(meanLo, i, G, K, E, pl);
    groupPattern<T>(invStd, i, G, K, E, pi);
    if (ASC_FEATURE_SIMD) {
      for (let g = 0; g < groups; g++) {
        for (let off: usize = 0; off < patBytes; off += 16, p += 16, o += 16) {
          const t = v128.mul<T>(v128.sub<T>(v128.sub<T>(v128.load(p), v128.load(pm + off)), v128.load(pl + off)), v128.load(pi + off));
          v128.store(o, madd<T>(t, v128.load(pg + off), v128.load(pb + off)));
        }
      }
    } else {
      for (let g = 0; g < groups; g++) {
        for (let off: usize = 0; off < patBytes; off += sizeof<T>(), p += sizeof<T>(), o += sizeof<T>()) {
          const t = ((load<T>(p) - load<T>(pm + off)) - load<T>(pl + off)) * load<T>(pi + off);
          store<T>(o, t * load<T>(pg + off) + load<T>(pb + off));
        }
      }
    }
    for (let e = 0; e < tail; e++, p += sizeof<T>(), o += sizeof<T>()) {
      const t = ((load<T>(p) - load<T>(at<T>(pm, e))) - load<T>(at<T>(pl, e))) * load<T>(at<T>(pi, e));
      store<T>(o, t * load<T>(at<T>(pg, e)) + load<T>(at<T>(pb, e)));
    }
  }
}

/**
 * The backward of groupApplyChannelsLast, with groupBackward's formulas: per item, the
 * channel sums Σdout and Σdout·(x − mean) (in T over blocks of ROW_BLOCK groups of E values,
 * then in f64), gathered per group; then dx = (invStd·gamma[c])·dout − invStd·mean(g) −
 * invStd³·mean(g·xc)·xc with g = dout·gamma. dx = 0: not computed.
 * work: 5·C f64, then seven patterns of E values of T and two of E f64.
 */
export function groupBackwardChannelsLast<T>(
  dout: usize, x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize,
  dx: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  const C = G * K;
  const E = groupLength<T>(C);
  const patBytes = <usize>E * sizeof<T>();
  const cBytes = <usize>C << 3;
  const dg64 = work, db64 = after(dg64, cBytes), sd = after(db64, cBytes), sdx = after(sd, cBytes), bc = after(sdx, cBytes);
  const pm = after(bc, cBytes), pl = after(pm, patBytes), pag = after(pl, patBytes), pam = after(pag, patBytes);
  const pbv = after(pam, patBytes), t1 = after(pbv, patBytes), t2 = after(t1, patBytes);
  const f1 = after(t2, patBytes), f2 = after(f1, <usize>E << 3);
  memory.fill(dg64, 0, cBytes);
  memory.fill(db64, 0, cBytes);
  const count = <f64>K * <f64>S;
  const itemValues = <i64>S * <i64>C;
  const groups = <i32>(itemValues / <i64>E);
  const tail = <i32>(itemValues - <i64>groups * <i64>E);
  const itemBytes = <usize>itemValues * sizeof<T>();
  for (let i = 0; i < n; i++) {
    const base = <usize>i * itemBytes;
    groupPattern<T>(mean, i, G, K, E, pm);
    groupPattern<T>(meanLo, i, G, K, E, pl);
    memory.fill(f1, 0, <usize>E << 3);
    memory.fill(f2, 0, <usize>E << 3);
    // Pass 1: the channel sums, E partial sums of each.
    let pd = dout + base, px = x + base;
    for (let g0 = 0; g0 < groups; g0 += ROW_BLOCK) {
      const end = min(groups, g0 + ROW_BLOCK);
      memory.fill(t1, 0, patBytes);
      memory.fill(t2, 0, patBytes);
      if (ASC_FEATURE_SIMD) {
        for (let g = g0; g < end; g++) {
          for (let off: usize = 0; off < patBytes; off += 16, pd += 16, px += 16) {
            const d = v128.load(pd);
            const xc = v128.sub<T>(v128.sub<T>(v128.load(px), v128.load(pm + off)), v128.load(pl + off));
            v128.store(t1 + off, v128.add<T>(v128.load(t1 + off), d));
            v128.store(t2 + off, v128.add<T>(v128.load(t2 + off), v128.mul<T>(d, xc)));
          }
        }
        const accBytes = <usize>lanes<T>() << 3;
        for (let off: usize = 0, acc: usize = 0; off < patBytes; off += 16, acc += accBytes) {
          addToF64<T>(f1 + acc, v128.load(t1 + off));
          addToF64<T>(f2 + acc, v128.load(t2 + off));
        }
      } else {
        for (let g = g0; g < end; g++) {
          for (let off: usize = 0; off < patBytes; off += sizeof<T>(), pd += sizeof<T>(), px += sizeof<T>()) {
            const d = load<T>(pd);
            const xc = (load<T>(px) - load<T>(pm + off)) - load<T>(pl + off);
            store<T>(t1 + off, load<T>(t1 + off) + d);
            store<T>(t2 + off, load<T>(t2 + off) + d * xc);
          }
        }
        for (let e = 0; e < E; e++) {
          store<f64>(at<f64>(f1, e), load<f64>(at<f64>(f1, e)) + <f64>load<T>(at<T>(t1, e)));
          store<f64>(at<f64>(f2, e), load<f64>(at<f64>(f2, e)) + <f64>load<T>(at<T>(t2, e)));
        }
      }
    }
    for (let e = 0; e < tail; e++, pd += sizeof<T>(), px += sizeof<T>()) {
      const d = <f64>load<T>(pd);
      const xc = <f64>((load<T>(px) - load<T>(at<T>(pm, e))) - load<T>(at<T>(pl, e)));
      store<f64>(at<f64>(f1, e), load<f64>(at<f64>(f1, e)) + d);
      store<f64>(at<f64>(f2, e), load<f64>(at<f64>(f2, e)) + d * xc);
    }
    memory.fill(sd, 0, cBytes);
    memory.fill(sdx, 0, cBytes);
    foldPattern(f1, E, C, sd);
    foldPattern(f2, E, C, sdx);
    // Per group: the sums of g = dout·gamma, the parameters' gradients and dx's constants.
    for (let g = 0; g < G; g++) {
      const q = i * G + g;
      const inv = <f64>load<T>(at<T>(invStd, q));
      let sumG = 0.0, sumGXc = 0.0;
      for (let k = 0; k < K; k++) {
        const c = g * K + k;
        const gc = <f64>load<T>(at<T>(gamma, c));
        const a = load<f64>(at<f64>(sd, c)), b = load<f64>(at<f64>(sdx, c));
        sumG += gc * a;
        sumGXc += gc * b;
        store<f64>(at<f64>(db64, c), load<f64>(at<f64>(db64, c)) + a);
        store<f64>(at<f64>(dg64, c), load<f64>(at<f64>(dg64, c)) + b * inv);
      }
      // dx's constants per channel (AG in sd, AM in sdx, B in bc), as groupBackward rounds them.
      const AM = inv * (sumG / count), B = inv * inv * inv * (sumGXc / count);
      for (let k = 0; k < K; k++) {
        const c = g * K + k;
        store<f64>(at<f64>(sd, c), inv * <f64>load<T>(at<T>(gamma, c)));
        store<f64>(at<f64>(sdx, c), AM);
        store<f64>(at<f64>(bc, c), B);
      }
    }
    if (!dx) continue;
    for (let e = 0, c = 0; e < E; e++) {
      store<T>(at<T>(pag, e), <T>load<f64>(at<f64>(sd, c)));
      store<T>(at<T>(pam, e), <T>load<f64>(at<f64>(sdx, c)));
      store<T>(at<T>(pbv, e), <T>load<f64>(at<f64>(bc, c)));
      if (++c == C) c = 0;
    }
    // Pass 2: dx = (AG·dout − AM) − B·xc.
    pd = dout + base;
    px = x + base;
    let po = dx + base;
    if (ASC_FEATURE_SIMD) {
      for (let g = 0; g < groups; g++) {
        for (let off: usize = 0; off < patBytes; off += 16, pd += 16, px += 16, po += 16) {
          const xc = v128.sub<T>(v128.sub<T>(v128.load(px), v128.load(pm + off)), v128.load(pl + off));
          const r = v128.sub<T>(v128.mul<T>(v128.load(pag + off), v128.load(pd)), v128.load(pam + off));
          v128.store(po, v128.sub<T>(r, v128.mul<T>(v128.load(pbv + off), xc)));
        }
      }
    } else {
      for (let g = 0; g < groups; g++) {
        for (let off: usize = 0; off < patBytes; off += sizeof<T>(), pd += sizeof<T>(), px += sizeof<T>(), po += sizeof<T>()) {
          const xc = (load<T>(px) - load<T>(pm + off)) - load<T>(pl + off);
          store<T>(po, (load<T>(pag + off) * load<T>(pd) - load<T>(pam + off)) - load<T>(pbv + off) * xc);
        }
      }
    }
    for (let e = 0; e < tail; e++, pd += sizeof<T>(), px += sizeof<T>(), po += sizeof<T>()) {
      const xc = (load<T>(px) - load<T>(at<T>(pm, e))) - load<T>(at<T>(pl, e));
      store<T>(po, (load<T>(at<T>(pag, e)) * load<T>(pd) - load<T>(at<T>(pam, e))) - load<T>(at<T>(pbv, e)) * xc);
    }
  }
  for (let c = 0; c < C; c++) {
    if (dgamma) store<T>(at<T>(dgamma, c), <T>load<f64>(at<f64>(dg64, c)));
    if (dbeta) store<T>(at<T>(dbeta, c), <T>load<f64>(at<f64>(db64, c)));
  }
}
