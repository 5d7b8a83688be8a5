// The fused ReLU's backward of channels-first data (n, d, S), channel by channel: the sums of
// one channel's runs, its map, then its dx, while those runs of x and dout are still in cache
// (src/tuning.ts, CHANNEL_BACKWARD_BYTES), so that the data come from memory once, not twice
// as in the two sweeps of backwardConstants and backwardApply. Each channel sees the same
// operations in the same order as there, so the results are the same bits.
import { at } from "./columns";
import { MAP_ARRAYS, after, columnArray } from "./work";
import { Relu, negate, reluMap } from "./activation";
import { backwardMap, planeRunApply, planeRunSums } from "./backward";

/**
 * backwardConstants<T, Relu> for channels, backwardReluMap and backwardApply<T, Relu> in one
 * kernel: dgamma, dbeta (either may be 0 to skip) and dx of channels-first data; gamma = 0
 * means gamma = 1, beta = 0 means beta = 0. work: workBytes<T>(n, d, S, BACKWARD_RELU_STEP).
 */
export function backwardChannelsRelu<T>(
  form: i32, dout: usize, x: usize, n: i32, d: i32, S: i32,
  gamma: usize, beta: usize, mean: usize, meanLo: usize, invStd: usize, dgamma: usize, dbeta: usize, dx: usize, work: usize,
): void {
  // The mask's scale and bias where backwardConstants keeps them, then the channel's two sums
  // (f64); the channel's map (d = 1: a, m, b 16 bytes apart) at the start of work.
  const ms = columnArray<T>(work, d, MAP_ARRAYS);
  const mr = after(ms, <usize>d * sizeof<T>());
  reluMap<T>(d, gamma, beta, meanLo, invStd, ms, mr);
  negate<T>(d, mr);
  const sums = after(mr, <usize>d * sizeof<T>());
  const runBytes = <usize>S * sizeof<T>();
  const itemBytes = <usize>d * runBytes;
  const N = <f64>n * <f64>S;
  for (let ch = 0; ch < d; ch++) {
    const kc = load<T>(at<T>(mean, ch)), sc = load<T>(at<T>(ms, ch)), rc = load<T>(at<T>(mr, ch));
    const first = <usize>ch * runBytes;
    store<f64>(sums, 0.0);
    store<f64>(sums, 0.0, 8);
    for (let i = 0, p = first; i < n; i++, p += itemBytes) planeRunSums<T, Relu>(dout, x, p, p + runBytes, kc, sc, rc, sums, sums + 8);
    backwardMap<T>(
      form, N, 1, gamma ? at<T>(gamma, ch) : 0, at<T>(meanLo, ch), at<T>(invStd, ch), sums, sums + 8,
      dgamma ? at<T>(dgamma, ch) : 0, dbeta ? at<T>(dbeta, ch) : 0, work,
    );
    const ac = load<T>(work), mc = load<T>(work, 16), bc = load<T>(work, 32);
    for (let i = 0, p = first; i < n; i++, p += itemBytes) planeRunApply<T, Relu>(dout, x, dx, p, p + runBytes, kc, ac, mc, bc, sc, rc);
  }
}
