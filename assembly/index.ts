// The module's exports: every kernel instantiated for f32 and f64.
// Pointers are byte addresses in this module's memory; the caller (src/wasm.ts) owns all
// memory above heapBase() and passes 16-byte aligned work areas of the sizes documented on
// each kernel (workBytesF32/F64). The same contract is written in src/wasm.ts.
import { trainMoments, trainConstants, testConstants, normalize, normalizeRelu } from "./normalize";
import { backwardConstants, backwardApply, backwardSumsMap } from "./backward";
import { Plain, Relu } from "./activation";
import { workBytes } from "./work";
import { checksum } from "./checksum";

/** First free byte after the module's static data. */
export function heapBase(): usize {
  return __heap_base;
}

/** Bytes of work area the kernels of one step take for (n, d, S) data (see work.ts). */
export function workBytesF32(n: i32, d: i32, S: i32, step: i32): f64 {
  return workBytes<f32>(n, d, S, step);
}

export function workBytesF64(n: i32, d: i32, S: i32, step: i32): f64 {
  return workBytes<f64>(n, d, S, step);
}

// S ("spatial") is 1 for rows (n, d) and channels-last data, and H·W (or L) for
// channels-first (n, d, S) data.

// Moments of rows (S = 1) and of channels-first runs (S > 1) are two exports, so that each
// module holds one of the two reductions (the size limit of scripts/build-wasm.mjs).
export function trainMomentsF32(x: usize, n: i32, d: i32, work: usize): void {
  trainMoments<f32>(x, n, d, 1, true, work);
}

export function trainMomentsF64(x: usize, n: i32, d: i32, work: usize): void {
  trainMoments<f64>(x, n, d, 1, true, work);
}

export function trainPlaneMomentsF32(x: usize, n: i32, d: i32, S: i32, work: usize): void {
  trainMoments<f32>(x, n, d, S, false, work);
}

export function trainPlaneMomentsF64(x: usize, n: i32, d: i32, S: i32, work: usize): void {
  trainMoments<f64>(x, n, d, S, false, work);
}

export function trainConstantsF32(
  d: i32, gamma: usize, beta: usize, eps: f64, momentum: f64, runVarScale: f64,
  runMean: usize, runVar: usize, mean: usize, meanLo: usize, variance: usize, invStd: usize, work: usize,
): void {
  trainConstants<f32>(d, gamma, beta, eps, momentum, runVarScale, runMean, runVar, mean, meanLo, variance, invStd, work);
}

export function trainConstantsF64(
  d: i32, gamma: usize, beta: usize, eps: f64, momentum: f64, runVarScale: f64,
  runMean: usize, runVar: usize, mean: usize, meanLo: usize, variance: usize, invStd: usize, work: usize,
): void {
  trainConstants<f64>(d, gamma, beta, eps, momentum, runVarScale, runMean, runVar, mean, meanLo, variance, invStd, work);
}

export function testConstantsF32(d: i32, gamma: usize, beta: usize, eps: f64, runMean: usize, runVar: usize, invStd: usize, work: usize): void {
  testConstants<f32>(d, gamma, beta, eps, runMean, runVar, invStd, work);
}

export function testConstantsF64(d: i32, gamma: usize, beta: usize, eps: f64, runMean: usize, runVar: usize, invStd: usize, work: usize): void {
  testConstants<f64>(d, gamma, beta, eps, runMean, runVar, invStd, work);
}

export function normalizeF32(x: usize, n: i32, d: i32, S: i32, work: usize, out: usize): void {
  normalize<f32>(x, n, d, S, work, out);
}

export function normalizeF64(x: usize, n: i32, d: i32, S: i32, work: usize, out: usize): void {
  normalize<f64>(x, n, d, S, work, out);
}

// Rows and channels-first runs, as for the moments above.
export function backwardConstantsF32(
  form: i32, dout: usize, x: usize, n: i32, d: i32,
  gamma: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  backwardConstants<f32, Plain>(form, dout, x, n, d, 1, true, gamma, mean, meanLo, invStd, dgamma, dbeta, work, 0);
}

export function backwardConstantsF64(
  form: i32, dout: usize, x: usize, n: i32, d: i32,
  gamma: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  backwardConstants<f64, Plain>(form, dout, x, n, d, 1, true, gamma, mean, meanLo, invStd, dgamma, dbeta, work, 0);
}

export function backwardPlaneConstantsF32(
  form: i32, dout: usize, x: usize, n: i32, d: i32, S: i32,
  gamma: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  backwardConstants<f32, Plain>(form, dout, x, n, d, S, false, gamma, mean, meanLo, invStd, dgamma, dbeta, work, 0);
}

export function backwardPlaneConstantsF64(
  form: i32, dout: usize, x: usize, n: i32, d: i32, S: i32,
  gamma: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  backwardConstants<f64, Plain>(form, dout, x, n, d, S, false, gamma, mean, meanLo, invStd, dgamma, dbeta, work, 0);
}

export function backwardApplyF32(dout: usize, x: usize, n: i32, d: i32, S: i32, mean: usize, dx: usize, work: usize): void {
  backwardApply<f32, Plain>(dout, x, n, d, S, mean, dx, work, 0, 0, 0, 0);
}

export function backwardApplyF64(dout: usize, x: usize, n: i32, d: i32, S: i32, mean: usize, dx: usize, work: usize): void {
  backwardApply<f64, Plain>(dout, x, n, d, S, mean, dx, work, 0, 0, 0, 0);
}

/** Checksum of memory as u32 words, not typed (see checksum.ts). */
export function checksumWords(p: usize, words: i32, first: i32, state: usize): void {
  checksum(p, words, first, state);
}

// LayerNorm, GroupNorm, InstanceNorm (layernorm.ts): data (n, G, K, S), statistics per (item, group).
import { groupApply, groupBackward } from "./layernorm";

export function groupApplyF32(
  x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize, beta: usize, out: usize,
): void {
  groupApply<f32>(x, n, G, K, S, mean, meanLo, invStd, gamma, beta, out);
}

export function groupApplyF64(
  x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize, beta: usize, out: usize,
): void {
  groupApply<f64>(x, n, G, K, S, mean, meanLo, invStd, gamma, beta, out);
}

export function groupBackwardF32(
  dout: usize, x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize,
  dx: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  groupBackward<f32>(dout, x, n, G, K, S, mean, meanLo, invStd, gamma, dx, dgamma, dbeta, work);
}

export function groupBackwardF64(
  dout: usize, x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize,
  dx: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  groupBackward<f64>(dout, x, n, G, K, S, mean, meanLo, invStd, gamma, dx, dgamma, dbeta, work);
}

// The fused batch norm + ReLU (activation.ts): the same kernels with the activation, each in
// its own module, so that the plain ones stay as they are.

export function normalizeReluF32(
  x: usize, n: i32, d: i32, S: i32, gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, work: usize, out: usize,
): void {
  normalizeRelu<f32>(x, n, d, S, gamma, beta, mean, meanLo, invStd, work, out);
}

export function normalizeReluF64(
  x: usize, n: i32, d: i32, S: i32, gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, work: usize, out: usize,
): void {
  normalizeRelu<f64>(x, n, d, S, gamma, beta, mean, meanLo, invStd, work, out);
}

export function backwardConstantsReluF32(
  form: i32, dout: usize, x: usize, n: i32, d: i32,
  gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  backwardConstants<f32, Relu>(form, dout, x, n, d, 1, true, gamma, mean, meanLo, invStd, dgamma, dbeta, work, beta);
}

export function backwardConstantsReluF64(
  form: i32, dout: usize, x: usize, n: i32, d: i32,
  gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  backwardConstants<f64, Relu>(form, dout, x, n, d, 1, true, gamma, mean, meanLo, invStd, dgamma, dbeta, work, beta);
}

export function backwardPlaneConstantsReluF32(
  form: i32, dout: usize, x: usize, n: i32, d: i32, S: i32,
  gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  backwardConstants<f32, Relu>(form, dout, x, n, d, S, false, gamma, mean, meanLo, invStd, dgamma, dbeta, work, beta);
}

export function backwardPlaneConstantsReluF64(
  form: i32, dout: usize, x: usize, n: i32, d: i32, S: i32,
  gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  backwardConstants<f64, Relu>(form, dout, x, n, d, S, false, gamma, mean, meanLo, invStd, dgamma, dbeta, work, beta);
}

export function backwardApplyReluF32(
  dout: usize, x: usize, n: i32, d: i32, S: i32, gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, dx: usize, work: usize,
): void {
  backwardApply<f32, Relu>(dout, x, n, d, S, mean, dx, work, gamma, beta, meanLo, invStd);
}

export function backwardApplyReluF64(
  dout: usize, x: usize, n: i32, d: i32, S: i32, gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, dx: usize, work: usize,
): void {
  backwardApply<f64, Relu>(dout, x, n, d, S, mean, dx, work, gamma, beta, meanLo, invStd);
}

export function backwardReluMapF32(form: i32, n: i32, d: i32, S: i32, gamma: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize): void {
  backwardSumsMap<f32>(form, <f64>n * <f64>S, d, gamma, meanLo, invStd, dgamma, dbeta, work, true);
}

export function backwardReluMapF64(form: i32, n: i32, d: i32, S: i32, gamma: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize): void {
  backwardSumsMap<f64>(form, <f64>n * <f64>S, d, gamma, meanLo, invStd, dgamma, dbeta, work, true);
}

// Thread pools (src/threads.ts): each thread sums its rows with backwardConstants, the
// caller adds the sums in a fixed order and makes the map once with these.
export function backwardMapF32(form: i32, N: f64, d: i32, gamma: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize): void {
  backwardSumsMap<f32>(form, N, d, gamma, meanLo, invStd, dgamma, dbeta, work, false);
}

export function backwardMapF64(form: i32, N: f64, d: i32, gamma: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, work: usize): void {
  backwardSumsMap<f64>(form, N, d, gamma, meanLo, invStd, dgamma, dbeta, work, false);
}

// GroupNorm and InstanceNorm on channels-last data (groupnorm.ts): (n, S, G, K).
import { groupMomentsChannelsLast, groupApplyChannelsLast, groupBackwardChannelsLast } from "./groupnorm";

export function groupMomentsChannelsLastF32(x: usize, n: i32, G: i32, K: i32, S: i32, work: usize): void {
  groupMomentsChannelsLast<f32>(x, n, G, K, S, work);
}

export function groupMomentsChannelsLastF64(x: usize, n: i32, G: i32, K: i32, S: i32, work: usize): void {
  groupMomentsChannelsLast<f64>(x, n, G, K, S, work);
}

export function groupApplyChannelsLastF32(
  x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize, beta: usize, out: usize, work: usize,
): void {
  groupApplyChannelsLast<f32>(x, n, G, K, S, mean, meanLo, invStd, gamma, beta, out, work);
}

export function groupApplyChannelsLastF64(
  x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize, beta: usize, out: usize, work: usize,
): void {
  groupApplyChannelsLast<f64>(x, n, G, K, S, mean, meanLo, invStd, gamma, beta, out, work);
}

export function groupBackwardChannelsLastF32(
  dout: usize, x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize,
  dx: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  groupBackwardChannelsLast<f32>(dout, x, n, G, K, S, mean, meanLo, invStd, gamma, dx, dgamma, dbeta, work);
}

export function groupBackwardChannelsLastF64(
  dout: usize, x: usize, n: i32, G: i32, K: i32, S: i32, mean: usize, meanLo: usize, invStd: usize, gamma: usize,
  dx: usize, dgamma: usize, dbeta: usize, work: usize,
): void {
  groupBackwardChannelsLast<f64>(dout, x, n, G, K, S, mean, meanLo, invStd, gamma, dx, dgamma, dbeta, work);
}

// The fused ReLU's backward of channels-first data channel by channel (channels-relu.ts).
import { backwardChannelsRelu } from "./channels-relu";

export function backwardChannelsReluF32(
  form: i32, dout: usize, x: usize, n: i32, d: i32, S: i32,
  gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, dx: usize, work: usize,
): void {
  backwardChannelsRelu<f32>(form, dout, x, n, d, S, gamma, beta, mean, meanLo, invStd, dgamma, dbeta, dx, work);
}

export function backwardChannelsReluF64(
  form: i32, dout: usize, x: usize, n: i32, d: i32, S: i32,
  gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, dx: usize, work: usize,
): void {
  backwardChannelsRelu<f64>(form, dout, x, n, d, S, gamma, beta, mean, meanLo, invStd, dgamma, dbeta, dx, work);
}
