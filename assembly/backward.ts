// Backward pass to dx, dgamma, dbeta from dout and the forward cache (x, mean, invStd).
//
// Both forms of the CS231n derivation need the same two sweeps over memory, one kernel each:
//   1. backwardConstants: column sums Σ dout and Σ dout·(x − μ), then per-column a, m, b;
//   2. backwardApply: dx = a·((dout − m) − b·(x − μ)).
// They differ in how a, m, b follow from the sums (the O(d) algebra in `backwardMap`):
// the graph form goes through dx̂, dvar and dmean node by node; the compact form uses
// dx = (γ·invStd / N)·(N·dout − dβ − x̂·dγ). Centring dout before scaling keeps the
// cancellation in N·dout − Σdout exact for N = 1.
import { lanes, at, addToF64, addLanesToF64x2, foldPartials, zeroF64, groupLength, patternOf, partialsOf, foldPattern, loadTwo, storeTwo, nmadd } from "./columns";
import { ROW_BLOCK, STRIP_GROUPS, blockGroups, foldBlock, streams, streamsGradients, gradientQuarters, stripsOf, quartersOf } from "./tuning";
import { MAP_ARRAYS, after, columnArray } from "./work";
import { dxOf, isRelu, masked, maskedOne, maskedXc, negate, reluMap, xcIf, xcOr } from "./activation";

/**
 * The sums of backwardSumsGroups over `rows` groups from byte `block` on, added into f64
 * accumulators s0, s1 (toT false) or into partial sums in T (toT true).
 */
// @ts-ignore: decorator
@inline function backwardSumsBlock<T>(
  dout: usize, x: usize, block: usize, rows: i32, P: i32, groupBytes: usize, cPat: usize, s0: usize, s1: usize, toT: bool,
  sPat: usize, rPat: usize, relu: bool,
): void {
  const L = lanes<T>();
  const accBytes = <usize>L << 3;
  // Two vectors per step (groupLength makes their count even); the first row starts the sums,
  // the others come two at a time, added pairwise before they reach the accumulators: four
  // of them (eight, as in shiftedSumsGroups, made V8 keep three on the stack, since the dout
  // vectors are live too).
  const pairs = (rows - 1) >> 1;
  for (let k = 0; k < P; k += 2) {
    const off = <usize>k << 4;
    const c0 = v128.load(cPat + off);
    const c1 = v128.load(cPat + off, 16);
    // The mask's constants (relu): loaded only where used.
    const m0 = relu ? v128.load(sPat + off) : c0, m1 = relu ? v128.load(sPat + off, 16) : c0;
    const r0 = relu ? v128.load(rPat + off) : c0, r1 = relu ? v128.load(rPat + off, 16) : c0;
    let p = block + off;
    let e0 = xcIf<T>(x + p, c0, relu), e1 = xcIf<T>(x + p + 16, c1, relu);
    let a0 = maskedXc<T>(v128.load(dout + p), e0, m0, r0, relu);
    let a1 = maskedXc<T>(v128.load(dout + p, 16), e1, m1, r1, relu);
    let b0 = v128.mul<T>(a0, xcOr<T>(e0, x + p, c0, relu));
    let b1 = v128.mul<T>(a1, xcOr<T>(e1, x + p + 16, c1, relu));
    p += groupBytes;
    for (let r = 0; r < pairs; r++, p += 2 * groupBytes) {
      const q = p + groupBytes;
      const e0 = xcIf<T>(x + p, c0, relu), e1 = xcIf<T>(x + p + 16, c1, relu);
      const e2 = xcIf<T>(x + q, c0, relu), e3 = xcIf<T>(x + q + 16, c1, relu);
      const g0v = maskedXc<T>(v128.load(dout + p), e0, m0, r0, relu);
      const g1v = maskedXc<T>(v128.load(dout + p, 16), e1, m1, r1, relu);
      const g2v = maskedXc<T>(v128.load(dout + q), e2, m0, r0, relu);
      const g3v = maskedXc<T>(v128.load(dout + q, 16), e3, m1, r1, relu);
      a0 = v128.add<T>(a0, v128.add<T>(g0v, g2v));
      a1 = v128.add<T>(a1, v128.add<T>(g1v, g3v));
      const t0 = v128.mul<T>(g0v, xcOr<T>(e0, x + p, c0, relu));
      const t2 = v128.mul<T>(g2v, xcOr<T>(e2, x + q, c0, relu));
      b0 = v128.add<T>(b0, v128.add<T>(t0, t2));
      const t1 = v128.mul<T>(g1v, xcOr<T>(e1, x + p + 16, c1, relu));
      const t3 = v128.mul<T>(g3v, xcOr<T>(e3, x + q + 16, c1, relu));
      b1 = v128.add<T>(b1, v128.add<T>(t1, t3));
    }
    if (!(rows & 1)) {
      const e0 = xcIf<T>(x + p, c0, relu), e1 = xcIf<T>(x + p + 16, c1, relu);
      const g0v = maskedXc<T>(v128.load(dout + p), e0, m0, r0, relu);
      const g1v = maskedXc<T>(v128.load(dout + p, 16), e1, m1, r1, relu);
      a0 = v128.add<T>(a0, g0v);
      a1 = v128.add<T>(a1, g1v);
      b0 = v128.add<T>(b0, v128.mul<T>(g0v, xcOr<T>(e0, x + p, c0, relu)));
      b1 = v128.add<T>(b1, v128.mul<T>(g1v, xcOr<T>(e1, x + p + 16, c1, relu)));
    }
    if (toT) {
      v128.store(s0 + off, v128.add<T>(v128.load(s0 + off), a0));
      v128.store(s0 + off, v128.add<T>(v128.load(s0 + off, 16), a1), 16);
      v128.store(s1 + off, v128.add<T>(v128.load(s1 + off), b0));
      v128.store(s1 + off, v128.add<T>(v128.load(s1 + off, 16), b1), 16);
    } else {
      const q0 = at<f64>(s0, k * L);
      const q1 = at<f64>(s1, k * L);
      addToF64<T>(q0, a0);
      addToF64<T>(q0 + accBytes, a1);
      addToF64<T>(q1, b0);
      addToF64<T>(q1 + accBytes, b1);
    }
  }
}

/**
 * SIMD: p0[e] += Σ_g dout[g, e], p1[e] += Σ_g dout[g, e]·(x[g, e] − cPat[e]) over groups of E
 * values, in blocks of groups that L1 holds together (blockGroups). Where a block is shorter
 * than ROW_BLOCK (groups of 2 KiB and more), ROW_BLOCK groups are first summed in T, in t0, t1
 * (E values each): a fold into f64 every 4 rows made the loop slower (see MIN_BLOCK in
 * docs/tuning.md).
 */
function backwardSumsGroups<T, A>(
  dout: usize, x: usize, groups: i32, E: i32, cPat: usize, t0: usize, t1: usize, p0: usize, p1: usize, sPat: usize, rPat: usize,
): void {
  const relu = isRelu<A>();
  const P = E / lanes<T>();
  const groupBytes = <usize>E * sizeof<T>();
  const blockRows = blockGroups(groupBytes, 2);
  // With relu, partial sums in T always: one inlined block fewer keeps the module < 4 KiB.
  if (!relu && blockRows >= ROW_BLOCK) {
    for (let g = 0; g < groups; g += blockRows) {
      backwardSumsBlock<T>(dout, x, <usize>g * groupBytes, min(blockRows, groups - g), P, groupBytes, cPat, p0, p1, false, sPat, rPat, relu);
    }
    return;
  }
  for (let g0 = 0; g0 < groups; g0 += ROW_BLOCK) {
    const end = min(g0 + ROW_BLOCK, groups);
    memory.fill(t0, 0, groupBytes);
    memory.fill(t1, 0, groupBytes);
    for (let g = g0; g < end; g += blockRows) {
      backwardSumsBlock<T>(dout, x, <usize>g * groupBytes, min(blockRows, end - g), P, groupBytes, cPat, t0, t1, true, sPat, rPat, relu);
    }
    foldPartials<T>(t0, t1, groupBytes, p0, p1);
  }
}

/**
 * SIMD, for inputs too large for cache (streams()), and for groups of 4 KiB and more in cache:
 * the sums of backwardSumsGroups in memory order, the block's partial sums in T kept in memory
 * (t0, t1: E values each), with K groups a K-th of the input apart at a time (see
 * shiftedSumsStream in statistics.ts). K = 4 (`quad`) in cache and for groups over 4 KiB: one
 * load of the shift and of the partial sums serves four groups. K = 2 when streaming smaller
 * groups: there four were slower. `block`: groups per fold into f64, as in shiftedSumsStream.
 * Measurements: docs/tuning.md (SPREAD_SUM_BYTES, STREAM_GRADIENT_BYTES).
 */
function backwardSumsStream<T, A>(
  dout: usize, x: usize, groups: i32, E: i32, cPat: usize, t0: usize, t1: usize, p0: usize, p1: usize, quad: bool, block: i32,
  sPat: usize, rPat: usize,
): void {
  const relu = isRelu<A>();
  const groupBytes = <usize>E * sizeof<T>();
  const K = quad ? 4 : 2;
  const runs = groups / K;
  const far = <usize>runs * groupBytes;
  for (let g0 = 0; g0 < runs; g0 += block / K) {
    const end = <usize>min(g0 + block / K, runs) * groupBytes;
    memory.fill(t0, 0, groupBytes);
    memory.fill(t1, 0, groupBytes);
    for (let p = <usize>g0 * groupBytes; p < end; p += groupBytes) {
      for (let off: usize = 0; off < groupBytes; off += 16) {
        const c = v128.load(cPat + off);
        const ms = relu ? v128.load(sPat + off) : c, mr = relu ? v128.load(rPat + off) : c;
        const q = p + off;
        const e0 = xcIf<T>(x + q, c, relu), e1 = xcIf<T>(x + q + far, c, relu);
        const g0v = maskedXc<T>(v128.load(dout + q), e0, ms, mr, relu);
        const g1v = maskedXc<T>(v128.load(dout + q + far), e1, ms, mr, relu);
        let a = v128.add<T>(g0v, g1v);
        let b = v128.add<T>(v128.mul<T>(g0v, xcOr<T>(e0, x + q, c, relu)), v128.mul<T>(g1v, xcOr<T>(e1, x + q + far, c, relu)));
        if (quad) {
          const r = q + 2 * far;
          const e2 = xcIf<T>(x + r, c, relu), e3 = xcIf<T>(x + r + far, c, relu);
          const g2v = maskedXc<T>(v128.load(dout + r), e2, ms, mr, relu);
          const g3v = maskedXc<T>(v128.load(dout + r + far), e3, ms, mr, relu);
          a = v128.add<T>(a, v128.add<T>(g2v, g3v));
          b = v128.add<T>(b, v128.add<T>(v128.mul<T>(g2v, xcOr<T>(e2, x + r, c, relu)), v128.mul<T>(g3v, xcOr<T>(e3, x + r + far, c, relu))));
        }
        v128.store(t0 + off, v128.add<T>(v128.load(t0 + off), a));
        v128.store(t1 + off, v128.add<T>(v128.load(t1 + off), b));
      }
    }
    foldPartials<T>(t0, t1, groupBytes, p0, p1);
  }
  const rest = <usize>K * far;
  backwardSumsGroups<T, A>(dout + rest, x + rest, groups - K * runs, E, cPat, t0, t1, p0, p1, sPat, rPat);
}

/** Row by row: adds Σ dout and Σ dout·(x − c) over rows [r0, n) into s0[j], s1[j]. */
function backwardSumsRows<T, A>(dout: usize, x: usize, r0: i32, n: i32, d: i32, c: usize, s0: usize, s1: usize, ms: usize, mr: usize): void {
  const relu = isRelu<A>();
  const rowBytes = <usize>d * sizeof<T>();
  for (; r0 < n; r0 += ROW_BLOCK) {
    const rows = min(ROW_BLOCK, n - r0);
    const offset = <usize>r0 * rowBytes;
    for (let j = 0; j < d; j++) {
      const cj = load<T>(at<T>(c, j));
      const sj: T = relu ? load<T>(at<T>(ms, j)) : 0, rj: T = relu ? load<T>(at<T>(mr, j)) : 0;
      let a0: T = 0;
      let a1: T = 0;
      let p = at<T>(offset, j);
      for (let r = 0; r < rows; r++, p += rowBytes) {
        const g = maskedOne<T>(load<T>(dout + p), x + p, cj, sj, rj, relu);
        a0 += g;
        a1 += g * (load<T>(x + p) - cj);
      }
      store<f64>(at<f64>(s0, j), load<f64>(at<f64>(s0, j)) + <f64>a0);
      store<f64>(at<f64>(s1, j), load<f64>(at<f64>(s1, j)) + <f64>a1);
    }
  }
}

/**
 * Strips of `strip` narrow groups from group g on (see NARROW_GROUP_BYTES), two vectors wide
 * (groupLength makes a group's count even) with their constants in registers; returns the
 * first group left. Inlined with a constant strip: as a variable, V8 kept the loop slower.
 * Two groups per step (`strip` is even): V8 spends a stack check, a counter and three pointer
 * additions on each step, so two groups halve them per vector (see STRIP_GROUPS in
 * docs/tuning.md).
 */
// @ts-ignore: decorator
@inline function backwardApplyStrips<T>(
  dout: usize, x: usize, g: i32, groups: i32, E: i32, cPat: usize, aPat: usize, mPat: usize, bPat: usize, dx: usize, strip: i32,
  sPat: usize, rPat: usize, relu: bool,
): i32 {
  const P = E / lanes<T>();
  const groupBytes = <usize>E * sizeof<T>();
  for (; g + strip <= groups; g += strip) {
    const base = <usize>g * groupBytes;
    for (let k = 0; k < P; k += 2) {
      const off = <usize>k << 4;
      const c0 = v128.load(cPat + off), a0 = v128.load(aPat + off), m0 = v128.load(mPat + off), b0 = v128.load(bPat + off);
      const c1 = v128.load(cPat + off, 16), a1 = v128.load(aPat + off, 16);
      const m1 = v128.load(mPat + off, 16), b1 = v128.load(bPat + off, 16);
      const ms0 = relu ? v128.load(sPat + off) : c0, mr0 = relu ? v128.load(rPat + off) : c0;
      const ms1 = relu ? v128.load(sPat + off, 16) : c0, mr1 = relu ? v128.load(rPat + off, 16) : c0;
      let pd = dout + base + off, px = x + base + off, po = dx + base + off;
      for (let r = 0; r < strip; r += 2, pd += 2 * groupBytes, px += 2 * groupBytes, po += 2 * groupBytes) {
        v128.store(po, dxOf<T>(v128.load(pd), px, c0, a0, m0, b0, ms0, mr0, relu));
        v128.store(po, dxOf<T>(v128.load(pd, 16), px + 16, c1, a1, m1, b1, ms1, mr1, relu), 16);
        const qd = pd + groupBytes, qx = px + groupBytes, qo = po + groupBytes;
        v128.store(qo, dxOf<T>(v128.load(qd), qx, c0, a0, m0, b0, ms0, mr0, relu));
        v128.store(qo, dxOf<T>(v128.load(qd, 16), qx + 16, c1, a1, m1, b1, ms1, mr1, relu), 16);
      }
    }
  }
  return g;
}

/**
 * dx of groups g.. four at a time, a quarter of the rest apart, one load of the constants for
 * four; returns the first of the one to three groups left. Streaming, backwardApplyGroups
 * calls it only for groups whose four arrays of constants, with the data streaming past, do
 * not stay in L1 (where they stay, the reads in memory order win). Two vectors per step, as
 * affineQuarters (little gain here: the data come from L2 and L3). Measurements:
 * docs/tuning.md (WIDE_GROUP_BYTES).
 */
function backwardApplyQuarters<T, A>(
  dout: usize, x: usize, g: i32, groups: i32, groupBytes: usize, cPat: usize, aPat: usize, mPat: usize, bPat: usize, dx: usize,
  sPat: usize, rPat: usize,
): i32 {
  const relu = isRelu<A>();
  const quads = (groups - g) >> 2;
  const stride = <usize>quads * groupBytes;
  for (let base = <usize>g * groupBytes, end = <usize>(g + quads) * groupBytes; base < end; base += groupBytes) {
    for (let off: usize = 0; off < groupBytes; off += 32) {
      const c0 = v128.load(cPat + off), a0 = v128.load(aPat + off), m0 = v128.load(mPat + off), b0 = v128.load(bPat + off);
      const c1 = v128.load(cPat + off, 16), a1 = v128.load(aPat + off, 16), m1 = v128.load(mPat + off, 16), b1 = v128.load(bPat + off, 16);
      const ms0 = relu ? v128.load(sPat + off) : c0, mr0 = relu ? v128.load(rPat + off) : c0;
      const ms1 = relu ? v128.load(sPat + off, 16) : c0, mr1 = relu ? v128.load(rPat + off, 16) : c0;
      // Written out four times: as a loop, V8 kept its counter and a stack check per vector.
      let p = base + off;
      v128.store(dx + p, dxOf<T>(v128.load(dout + p), x + p, c0, a0, m0, b0, ms0, mr0, relu));
      v128.store(dx + p, dxOf<T>(v128.load(dout + p, 16), x + p + 16, c1, a1, m1, b1, ms1, mr1, relu), 16);
      p += stride;
      v128.store(dx + p, dxOf<T>(v128.load(dout + p), x + p, c0, a0, m0, b0, ms0, mr0, relu));
      v128.store(dx + p, dxOf<T>(v128.load(dout + p, 16), x + p + 16, c1, a1, m1, b1, ms1, mr1, relu), 16);
      p += stride;
      v128.store(dx + p, dxOf<T>(v128.load(dout + p), x + p, c0, a0, m0, b0, ms0, mr0, relu));
      v128.store(dx + p, dxOf<T>(v128.load(dout + p, 16), x + p + 16, c1, a1, m1, b1, ms1, mr1, relu), 16);
      p += stride;
      v128.store(dx + p, dxOf<T>(v128.load(dout + p), x + p, c0, a0, m0, b0, ms0, mr0, relu));
      v128.store(dx + p, dxOf<T>(v128.load(dout + p, 16), x + p + 16, c1, a1, m1, b1, ms1, mr1, relu), 16);
    }
  }
  return g + 4 * quads;
}

/**
 * SIMD over groups: dx = a·((dout − m) − b·(x − c)); narrow groups in strips, others four
 * groups per load of the constants, or one after another, two vectors per step, when
 * streaming groups whose constants stay in L1 (see affineGroups in normalize.ts).
 * `rowsPerGroup` = E / d.
 */
function backwardApplyGroups<T, A>(
  dout: usize, x: usize, groups: i32, E: i32, cPat: usize, aPat: usize, mPat: usize, bPat: usize, dx: usize, stream: bool, rowsPerGroup: i32,
  sPat: usize, rPat: usize,
): void {
  const relu = isRelu<A>();
  const P = E / lanes<T>();
  const groupBytes = <usize>E * sizeof<T>();
  let g = 0;
  if (stripsOf(groupBytes, stream)) {
    // Groups of several rows in strips of twice the height; each height inlined as a constant.
    g = rowsPerGroup > 1
      ? backwardApplyStrips<T>(dout, x, g, groups, E, cPat, aPat, mPat, bPat, dx, 2 * STRIP_GROUPS, sPat, rPat, relu)
      : backwardApplyStrips<T>(dout, x, g, groups, E, cPat, aPat, mPat, bPat, dx, STRIP_GROUPS, sPat, rPat, relu);
  }
  // With relu (six arrays of constants) always: one load of them for four groups was faster
  // streaming too (docs/fusion.md).
  if (relu || quartersOf(groupBytes, stream)) g = backwardApplyQuarters<T, A>(dout, x, g, groups, groupBytes, cPat, aPat, mPat, bPat, dx, sPat, rPat);
  for (; g < groups; g++) {
    const base = <usize>g * groupBytes;
    for (let k = 0; k < P; k += 2) {
      const off = <usize>k << 4;
      const p = base + off;
      const xc = v128.sub<T>(v128.load(x + p), v128.load(cPat + off));
      const gd = relu ? masked<T>(v128.load(dout + p), x + p, v128.load(cPat + off), v128.load(sPat + off), v128.load(rPat + off), true) : v128.load(dout + p);
      const t = nmadd<T>(v128.load(bPat + off), xc, v128.sub<T>(gd, v128.load(mPat + off)));
      v128.store(dx + p, v128.mul<T>(v128.load(aPat + off), t));
      const yc = v128.sub<T>(v128.load(x + p, 16), v128.load(cPat + off, 16));
      const ge = relu ? masked<T>(v128.load(dout + p, 16), x + p + 16, v128.load(cPat + off, 16), v128.load(sPat + off, 16), v128.load(rPat + off, 16), true) : v128.load(dout + p, 16);
      const u = nmadd<T>(v128.load(bPat + off, 16), yc, v128.sub<T>(ge, v128.load(mPat + off, 16)));
      v128.store(dx + p, v128.mul<T>(v128.load(aPat + off, 16), u), 16);
    }
  }
}

/** The map dx = a·((dout − m) − b·(x − mean)) at the start of the work area (columnArray): a, m, b. */
const A = 0, M = 1, B = 2;

export const GRAPH_FORM = 0;
export const COMPACT_FORM = 1;
/** Frozen statistics (eval mode, fine-tuning): mean is the running mean, invStd 1/sqrt(runVar + eps). */
export const EVAL_FORM = 2;

/**
 * Backward, first half, for a forward whose cache holds x, mean + meanLo and invStd: `rows`
 * (n, d) with S = 1, or channels of (n, d, S); each export passes `rows` as a constant, so its
 * module keeps one of the two paths (as columnMeanVar). Writes dgamma and dbeta (either may
 * be 0 to skip) and the map dx = a·((dout − m) − b·(x − mean)) for backwardApply at the start
 * of work (a, m, b: d values of T each). gamma = 0 means gamma = 1.
 * With A = Relu (the fused forward max(0, ·), see activation.ts), dout masked by the forward's
 * out > 0, recomputed from x, gamma, beta (0: beta = 0) and the statistics; then only the
 * sums, and backwardReluMap the rest.
 * work: workBytes<T>(d) (with relu: for BACKWARD_RELU_STEP), 16-byte aligned.
 */
// @ts-ignore: decorator
@inline export function backwardConstants<T, A>(
  form: i32, dout: usize, x: usize, n: i32, d: i32, S: i32, rows: bool,
  gamma: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize, beta: usize,
): void {
  const relu = isRelu<A>();
  // With relu, the mask's scale and bias (d values of T each) come first.
  const ms = columnArray<T>(work, d, MAP_ARRAYS);
  const mr = after(ms, <usize>d * sizeof<T>());
  if (relu) {
    reluMap<T>(d, gamma, beta, meanLo, invStd, ms, mr);
    negate<T>(d, mr);
  }
  const sDout = sumsAt<T>(work, d, relu);
  const sDoutX = after(sDout, <usize>d << 3);
  const scratch = after(sDoutX, <usize>d << 3);
  if (!rows) planeBackwardSums<T, A>(dout, x, n, d, S, mean, sDout, sDoutX, ms, mr);
  else {
    zeroF64(sDout, d);
    zeroF64(sDoutX, d);
    const E = groupLength<T>(d);
    const groups = ASC_FEATURE_SIMD ? <i32>((<i64>n * d) / E) : 0;
    if (groups > 0) {
      const patBytes = <usize>E * sizeof<T>();
      const cPat = patternOf<T>(mean, d, E, scratch);
      const q0 = after(scratch, patBytes);
      const q1 = after(q0, <usize>E << 3);
      const p0 = partialsOf(sDout, d, E, q0);
      const p1 = partialsOf(sDoutX, d, E, q1);
      const t0 = after(q1, <usize>E << 3);
      const t1 = after(t0, patBytes);
      const sPat = relu ? patternOf<T>(ms, d, E, after(t1, patBytes)) : 0;
      const rPat = relu ? patternOf<T>(mr, d, E, after(t1, 2 * patBytes)) : 0;
      // Large inputs stream unless their groups are narrow, and wide groups in cache too (see
      // shiftedSums in statistics.ts). With relu four groups at a time streaming too: one load
      // of the three patterns for four groups was faster (docs/fusion.md).
      const stream = streams<T>(n, d);
      if (streamsGradients(patBytes, stream)) backwardSumsStream<T, A>(dout, x, groups, E, cPat, t0, t1, p0, p1, relu || gradientQuarters(patBytes, stream), foldBlock(stream), sPat, rPat);
      else backwardSumsGroups<T, A>(dout, x, groups, E, cPat, t0, t1, p0, p1, sPat, rPat);
      foldPattern(p0, E, d, sDout);
      foldPattern(p1, E, d, sDoutX);
    }
    backwardSumsRows<T, A>(dout, x, groups * (E / d), n, d, mean, sDout, sDoutX, ms, mr);
  }
  // With relu the map is a kernel of its own (backwardSumsMap): one module would be too large.
  if (!relu) backwardMap<T>(form, <f64>n * <f64>S, d, gamma, meanLo, invStd, sDout, sDoutX, dgamma, dbeta, work);
}

/**
 * Where backwardConstants<T, A> leaves its sums in work: Σ dout (f64, d values), then
 * Σ dout·(x − mean), after the map arrays, and with relu after the mask's scale and bias.
 */
// @ts-ignore: decorator
@inline function sumsAt<T>(work: usize, d: i32, relu: bool): usize {
  const ms = columnArray<T>(work, d, MAP_ARRAYS);
  return relu ? after(after(ms, <usize>d * sizeof<T>()), <usize>d * sizeof<T>()) : ms;
}

/**
 * From the sums Σ dout and Σ dout·(x − mean) over N values per column: dgamma, dbeta and the
 * map dx = a·((dout − m) − b·(x − mean)) at the start of work.
 */
export function backwardMap<T>(
  form: i32, N: f64, d: i32, gamma: usize, meanLo: usize, invStd: usize,
  sDout: usize, sDoutX: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  const a = columnArray<T>(work, d, A);
  const m = columnArray<T>(work, d, M);
  const b = columnArray<T>(work, d, B);
  const invN = 1.0 / N;
  let j = 0;
  if (ASC_FEATURE_SIMD) {
    // The loop below two columns at a time, the same operations in the same order: it is
    // bound by conversions between f64 and T.
    const one = f64x2.splat(1.0);
    const zero = f64x2.splat(0.0);
    const n1 = f64x2.splat(invN);
    for (; j + 2 <= d; j += 2) {
      const g = gamma ? loadTwo<T>(at<T>(gamma, j)) : one;
      const inv = loadTwo<T>(at<T>(invStd, j));
      const lo = loadTwo<T>(at<T>(meanLo, j));
      const sumDout = v128.load(at<f64>(sDout, j));
      const sumDoutXc = f64x2.sub(v128.load(at<f64>(sDoutX, j)), f64x2.mul(lo, sumDout));
      const dGamma = f64x2.mul(sumDoutXc, inv);
      const ca = f64x2.mul(g, inv);
      let mk = zero, mb = zero;
      if (form == GRAPH_FORM) {
        const dVar = f64x2.mul(f64x2.mul(f64x2.mul(f64x2.mul(f64x2.mul(g, sumDoutXc), f64x2.splat(-0.5)), inv), inv), inv);
        const dMeanRest = f64x2.mul(f64x2.mul(dVar, f64x2.splat(-2.0 * 0.0)), n1);
        const r = v128.bitselect(f64x2.div(n1, ca), zero, f64x2.ne(ca, zero));
        mk = f64x2.sub(f64x2.mul(sumDout, n1), f64x2.mul(dMeanRest, r));
        mb = f64x2.mul(f64x2.mul(f64x2.splat(-2.0), dVar), r);
      } else if (form != EVAL_FORM) {
        mk = f64x2.mul(sumDout, n1);
        mb = f64x2.mul(f64x2.mul(dGamma, inv), n1);
      }
      storeTwo<T>(at<T>(a, j), ca);
      storeTwo<T>(at<T>(m, j), f64x2.sub(mk, f64x2.mul(mb, lo)));
      storeTwo<T>(at<T>(b, j), mb);
      if (dgamma) storeTwo<T>(at<T>(dgamma, j), dGamma);
      if (dbeta) storeTwo<T>(at<T>(dbeta, j), sumDout);
    }
  }
  for (; j < d; j++) {
    const g: f64 = gamma ? <f64>load<T>(at<T>(gamma, j)) : 1.0;
    const inv = <f64>load<T>(at<T>(invStd, j));
    const lo = <f64>load<T>(at<T>(meanLo, j));
    // Sums about the exact mean μ = mean + meanLo.
    const sumDout = load<f64>(at<f64>(sDout, j));
    const sumDoutXc = load<f64>(at<f64>(sDoutX, j)) - lo * sumDout;
    const dBeta = sumDout;
    const dGamma = sumDoutXc * inv;
    // dx = a·((dout − mk) − mb·(x − μ)).
    let ca: f64, mk: f64, mb: f64;
    if (form == GRAPH_FORM) {
      // x̂ = (x − μ)·invStd, out = γ·x̂ + β
      // dx̂ = dout·γ
      // dvar = Σ dx̂·(x − μ) · (−½)·invStd³
      // dmean = −Σ dx̂·invStd + dvar · Σ(−2(x − μ)) / N, where Σ(x − μ) = 0 by definition of μ
      // dx = dx̂·invStd + dvar·2(x − μ)/N + dmean/N
      // dx = a·((dout − mk) − mb·(x − μ)) with a = γ·invStd takes mk = −dmean/(N·a); dmean's
      // first term −Σdx̂·invStd = −a·Σdout gives Σdout/N there, without the rounding of a
      // product and a quotient by a (N = 1: dout − mk is exactly 0, as dx must be).
      const sumXc = 0.0;
      const dVar = g * sumDoutXc * -0.5 * inv * inv * inv;
      const dMeanRest = dVar * (-2.0 * sumXc) * invN;
      ca = g * inv;
      const r = ca != 0 ? invN / ca : 0.0;
      mk = sumDout * invN - dMeanRest * r;
      mb = -2.0 * dVar * r;
    } else if (form == EVAL_FORM) {
      // The statistics are constants: dx = dout·γ·invStd.
      ca = g * inv;
      mk = 0.0;
      mb = 0.0;
    } else {
      // dx = (γ·invStd/N)·(N·dout − dβ − x̂·dγ) = γ·invStd·((dout − dβ/N) − (dγ·invStd/N)·(x − μ))
      ca = g * inv;
      mk = dBeta * invN;
      mb = dGamma * inv * invN;
    }
    // The kernel subtracts `mean`, not μ: (x − μ) = (x − mean) − lo.
    store<T>(at<T>(a, j), <T>ca);
    store<T>(at<T>(m, j), <T>(mk - mb * lo));
    store<T>(at<T>(b, j), <T>mb);
    if (dgamma) store<T>(at<T>(dgamma, j), <T>dGamma);
    if (dbeta) store<T>(at<T>(dbeta, j), <T>dBeta);
  }
}

/**
 * Backward, second half: dx = a·((dout − m) − b·(x − mean)) with the map at the start of work;
 * with `relu`, dout masked as in backwardConstants (gamma, beta, meanLo, invStd are read
 * only then).
 */
export function backwardApply<T, A>(
  dout: usize, x: usize, n: i32, d: i32, S: i32, mean: usize, dx: usize, work: usize,
  gamma: usize, beta: usize, meanLo: usize, invStd: usize,
): void {
  const relu = isRelu<A>();
  const a = columnArray<T>(work, d, A);
  const m = columnArray<T>(work, d, M);
  const b = columnArray<T>(work, d, B);
  const ms = columnArray<T>(work, d, MAP_ARRAYS);
  const mr = after(ms, <usize>d * sizeof<T>());
  if (relu) {
    reluMap<T>(d, gamma, beta, meanLo, invStd, ms, mr);
    negate<T>(d, mr);
  }
  if (S > 1) {
    planeBackwardApply<T, A>(dout, x, n, d, S, mean, a, m, b, dx, ms, mr);
    return;
  }
  const E = groupLength<T>(d);
  const groups = ASC_FEATURE_SIMD ? <i32>((<i64>n * d) / E) : 0;
  const r0 = groups * (E / d);
  if (groups > 0) {
    const patBytes = <usize>E * sizeof<T>();
    const rest = relu ? after(mr, <usize>d * sizeof<T>()) : ms;
    const cPat = patternOf<T>(mean, d, E, rest);
    const aPat = patternOf<T>(a, d, E, after(rest, patBytes));
    const mPat = patternOf<T>(m, d, E, after(rest, 2 * patBytes));
    const bPat = patternOf<T>(b, d, E, after(rest, 3 * patBytes));
    const sPat = relu ? patternOf<T>(ms, d, E, after(rest, 4 * patBytes)) : 0;
    const rPat = relu ? patternOf<T>(mr, d, E, after(rest, 5 * patBytes)) : 0;
    backwardApplyGroups<T, A>(dout, x, groups, E, cPat, aPat, mPat, bPat, dx, streams<T>(n, d), E / d, sPat, rPat);
  }
  const rowBytes = <usize>d * sizeof<T>();
  for (let r = r0; r < n; r++) {
    const offset = <usize>r * rowBytes;
    for (let j = 0; j < d; j++) {
      const p = at<T>(offset, j);
      const xc: T = load<T>(x + p) - load<T>(at<T>(mean, j));
      const g: T = relu ? maskedOne<T>(load<T>(dout + p), x + p, load<T>(at<T>(mean, j)), load<T>(at<T>(ms, j)), load<T>(at<T>(mr, j)), true) : load<T>(dout + p);
      const t: T = g - load<T>(at<T>(m, j)) - load<T>(at<T>(b, j)) * xc;
      store<T>(dx + p, load<T>(at<T>(a, j)) * t);
    }
  }
}

// Channels-first data (N, C, S): channel c of item i is the contiguous run of S values at
// base + ((i·C + c)·S)·sizeof<T>() (S = H·W for NCHW images, L for (N, C, L)). Per-channel
// sums reduce contiguous runs, so these loops need no patterns or transposes.

/**
 * The sums of one run [p, end) of a channel (constants kc, and sc, rc for the mask), added
 * into the f64 values at s0c and s1c; the run's SIMD part in blocks folded into f64.
 */
// @ts-ignore: decorator
@inline export function planeRunSums<T, A>(dout: usize, x: usize, p: usize, end: usize, kc: T, sc: T, rc: T, s0c: usize, s1c: usize): void {
  const relu = isRelu<A>();
  const L = lanes<T>();
  let sum0 = 0.0;
  let sum1 = 0.0;
  if (ASC_FEATURE_SIMD) {
    const zero = v128.splat<T>(<T>0);
    const kv = v128.splat<T>(kc);
    const sv = v128.splat<T>(sc), rv = v128.splat<T>(rc);
    let f0 = f64x2.splat(0);
    let f1 = f64x2.splat(0);
    // With relu four vectors per step, added in pairs before the accumulators (as
    // backwardSumsBlock): the mask's operations made the two-vector loop slower than the
    // plain one. Half the steps per fold: as many values per lane in T as below.
    while (relu && p + 64 <= end) {
      let a0 = zero, a1 = zero, b0 = zero, b1 = zero;
      for (let step = 0; step < ROW_BLOCK / 2 && p + 64 <= end; step++, p += 64) {
        const e0 = v128.sub<T>(v128.load(x + p), kv), e1 = v128.sub<T>(v128.load(x + p, 16), kv);
        const e2 = v128.sub<T>(v128.load(x + p, 32), kv), e3 = v128.sub<T>(v128.load(x + p, 48), kv);
        const g0 = maskedXc<T>(v128.load(dout + p), e0, sv, rv, true), g1 = maskedXc<T>(v128.load(dout + p, 16), e1, sv, rv, true);
        const g2 = maskedXc<T>(v128.load(dout + p, 32), e2, sv, rv, true), g3 = maskedXc<T>(v128.load(dout + p, 48), e3, sv, rv, true);
        a0 = v128.add<T>(a0, v128.add<T>(g0, g2));
        a1 = v128.add<T>(a1, v128.add<T>(g1, g3));
        b0 = v128.add<T>(b0, v128.add<T>(v128.mul<T>(g0, e0), v128.mul<T>(g2, e2)));
        b1 = v128.add<T>(b1, v128.add<T>(v128.mul<T>(g1, e1), v128.mul<T>(g3, e3)));
      }
      f0 = addLanesToF64x2<T>(f0, v128.add<T>(a0, a1));
      f1 = addLanesToF64x2<T>(f1, v128.add<T>(b0, b1));
    }
    while (p + 32 <= end) {
      let a0 = zero, a1 = zero, b0 = zero, b1 = zero;
      for (let step = 0; step < ROW_BLOCK && p + 32 <= end; step++, p += 32) {
        const g0 = masked<T>(v128.load(dout + p), x + p, kv, sv, rv, relu);
        const g1 = masked<T>(v128.load(dout + p, 16), x + p + 16, kv, sv, rv, relu);
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
      const g = maskedOne<T>(load<T>(dout + p), x + p, kc, sc, rc, relu);
      a += g;
      b += g * (load<T>(x + p) - kc);
    }
    sum0 += <f64>a;
    sum1 += <f64>b;
  }
  store<f64>(s0c, load<f64>(s0c) + sum0);
  store<f64>(s1c, load<f64>(s1c) + sum1);
}

/** dx = ac·((dout − mc) − bc·(x − kc)) over one run [p, end) of a channel (dout masked with relu). */
// @ts-ignore: decorator
@inline export function planeRunApply<T, A>(dout: usize, x: usize, dx: usize, p: usize, end: usize, kc: T, ac: T, mc: T, bc: T, sc: T, rc: T): void {
  const relu = isRelu<A>();
  if (ASC_FEATURE_SIMD) {
    const kv = v128.splat<T>(kc);
    const av = v128.splat<T>(ac);
    const mv = v128.splat<T>(mc);
    const bv = v128.splat<T>(bc);
    const sv = v128.splat<T>(sc), rv = v128.splat<T>(rc);
    // With relu four vectors per step: one counter and test for four (the mask's operations
    // made the one-vector loop slower than the plain one).
    for (; relu && p + 64 <= end; p += 64) {
      v128.store(dx + p, dxOf<T>(v128.load(dout + p), x + p, kv, av, mv, bv, sv, rv, true));
      v128.store(dx + p, dxOf<T>(v128.load(dout + p, 16), x + p + 16, kv, av, mv, bv, sv, rv, true), 16);
      v128.store(dx + p, dxOf<T>(v128.load(dout + p, 32), x + p + 32, kv, av, mv, bv, sv, rv, true), 32);
      v128.store(dx + p, dxOf<T>(v128.load(dout + p, 48), x + p + 48, kv, av, mv, bv, sv, rv, true), 48);
    }
    for (; p + 16 <= end; p += 16) {
      const xc = v128.sub<T>(v128.load(x + p), kv);
      const t = nmadd<T>(bv, xc, v128.sub<T>(masked<T>(v128.load(dout + p), x + p, kv, sv, rv, relu), mv));
      v128.store(dx + p, v128.mul<T>(av, t));
    }
  }
  for (; p < end; p += sizeof<T>()) {
    store<T>(dx + p, ac * ((maskedOne<T>(load<T>(dout + p), x + p, kc, sc, rc, relu) - mc) - bc * (load<T>(x + p) - kc)));
  }
}

/** s0[c] = Σ dout, s1[c] = Σ dout·(x − k[c]) over every run of channel c (f64), in memory order. */
export function planeBackwardSums<T, A>(
  dout: usize, x: usize, n: i32, d: i32, S: i32, k: usize, s0: usize, s1: usize, ms: usize, mr: usize,
): void {
  const relu = isRelu<A>();
  const runBytes = <usize>S * sizeof<T>();
  memory.fill(s0, 0, <usize>d << 3);
  memory.fill(s1, 0, <usize>d << 3);
  let p: usize = 0;
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < d; ch++, p += runBytes) {
      const sc: T = relu ? load<T>(at<T>(ms, ch)) : 0, rc: T = relu ? load<T>(at<T>(mr, ch)) : 0;
      planeRunSums<T, A>(dout, x, p, p + runBytes, load<T>(at<T>(k, ch)), sc, rc, at<f64>(s0, ch), at<f64>(s1, ch));
    }
  }
}

/** dx = a[c]·((dout − m[c]) − b[c]·(x − k[c])) over every run of channel c. */
export function planeBackwardApply<T, A>(
  dout: usize, x: usize, n: i32, d: i32, S: i32, k: usize, a: usize, m: usize, b: usize, dx: usize, ms: usize, mr: usize,
): void {
  const relu = isRelu<A>();
  const runBytes = <usize>S * sizeof<T>();
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < d; ch++) {
      const sc: T = relu ? load<T>(at<T>(ms, ch)) : 0, rc: T = relu ? load<T>(at<T>(mr, ch)) : 0;
      const p = (<usize>i * d + ch) * runBytes;
      planeRunApply<T, A>(
        dout, x, dx, p, p + runBytes, load<T>(at<T>(k, ch)), load<T>(at<T>(a, ch)), load<T>(at<T>(m, ch)), load<T>(at<T>(b, ch)), sc, rc,
      );
    }
  }
}

/**
 * backwardMap over the sums backwardConstants<T, A> leaves in its work area (sumsAt), for N
 * values per column: a thread pool adds every thread's sums there, then calls this; the fused
 * ReLU's backward (relu: a constant at each export) always does, its map being a module of its own.
 */
// @ts-ignore: decorator
@inline export function backwardSumsMap<T>(
  form: i32, N: f64, d: i32, gamma: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize, relu: bool,
): void {
  const sDout = sumsAt<T>(work, d, relu);
  backwardMap<T>(form, N, d, gamma, meanLo, invStd, sDout, after(sDout, <usize>d << 3), dgamma, dbeta, work);
}
