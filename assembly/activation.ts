// The fused ReLU (out = max(0, BN(x))): its map and its mask. No mask is stored between the
// forward and the backward: both compute out's pre-activation y = (x − mean)·scale + bias
// with the same constants from the same saved values (reluMap), in the same operations, so
// the backward's mask y > 0 is exactly the forward's out > 0, and dout is masked inside the
// backward's two sweeps. At y = 0 the gradient is 0, as PyTorch's ReLU has it.
import { at, nmadd } from "./columns";

/**
 * The activation as a kernel's type argument (kernel<T, Plain> or kernel<T, Relu>): each is
 * its own instance, the test folded away at compile time, so that the plain kernels are
 * exactly as they were (a bool argument stayed a run-time test in the split modules).
 */
@final export class Plain {}
@final export class Relu {}

/** Whether the activation A is Relu (a compile-time constant). */
// @ts-ignore: decorator
@inline export function isRelu<A>(): bool {
  return idof<A>() == idof<Relu>();
}

/**
 * scale[j] = gamma·invStd and bias[j] = beta − meanLo·scale, rounded to T, from the values a
 * forward saves (T each; gamma, beta, meanLo = 0 mean 1, 0, 0). trainConstants computes its
 * scale from the f64 invStd: for f64 the same map, for f32 one rounding apart (the fused
 * forward uses this one, so that its backward can recompute it).
 */
export function reluMap<T>(d: i32, gamma: usize, beta: usize, meanLo: usize, invStd: usize, scale: usize, bias: usize): void {
  for (let j = 0; j < d; j++) {
    const g: f64 = gamma ? <f64>load<T>(at<T>(gamma, j)) : 1.0;
    const b: f64 = beta ? <f64>load<T>(at<T>(beta, j)) : 0.0;
    const lo: f64 = meanLo ? <f64>load<T>(at<T>(meanLo, j)) : 0.0;
    const s = <T>(g * <f64>load<T>(at<T>(invStd, j)));
    store<T>(at<T>(scale, j), s);
    store<T>(at<T>(bias, j), <T>(b - lo * <f64>s));
  }
}

/**
 * y < 0 ? 0 : y when `relu` (a constant at every call: each module keeps one of the two):
 * pmax, one instruction on x64 where max's NaN and −0 rules take several; NaN stays NaN.
 */
// @ts-ignore: decorator
@inline export function activated<T>(y: v128, relu: bool): v128 {
  return relu ? v128.pmax<T>(y, v128.splat<T>(<T>0)) : y;
}

/** The scalar activated, the same rule. */
// @ts-ignore: decorator
@inline export function activatedOne<T>(y: T, relu: bool): T {
  return relu ? (y < <T>0 ? <T>0 : y) : y;
}

/**
 * In place: bias = −bias, for the backward's masks, which test (x − c)·s > −bias: the same
 * as (x − c)·s + bias > 0 (a rounded sum is 0 only when the exact one is), one addition less.
 */
export function negate<T>(d: i32, bias: usize): void {
  for (let j = 0; j < d; j++) store<T>(at<T>(bias, j), -load<T>(at<T>(bias, j)));
}

/**
 * dout where (x − c)·s > nr (nr = −bias: out > 0), else 0, for the vector x at address `px`;
 * dout itself unless `relu` (then x is not even loaded: the plain kernels stay as they were).
 */
// @ts-ignore: decorator
@inline export function masked<T>(dout: v128, px: usize, c: v128, s: v128, nr: v128, relu: bool): v128 {
  return relu ? v128.and(dout, v128.gt<T>(v128.mul<T>(v128.sub<T>(v128.load(px), c), s), nr)) : dout;
}

/**
 * For sums that use x − c twice (the mask and a product): xcIf loads x and subtracts only
 * with relu, maskedXc masks with it, xcOr gives x − c for the product (the plain kernels
 * load it there, as before).
 */
// @ts-ignore: decorator
@inline export function xcIf<T>(px: usize, c: v128, relu: bool): v128 {
  return relu ? v128.sub<T>(v128.load(px), c) : c;
}

// @ts-ignore: decorator
@inline export function maskedXc<T>(dout: v128, xc: v128, s: v128, nr: v128, relu: bool): v128 {
  return relu ? v128.and(dout, v128.gt<T>(v128.mul<T>(xc, s), nr)) : dout;
}

/**
 * dx = a·((masked dout − m) − b·(x − c)), x − c computed once for the mask and the product;
 * the product b·(x − c) fused into the difference in the relaxed build (nmadd).
 */
// @ts-ignore: decorator
@inline export function dxOf<T>(dout: v128, px: usize, c: v128, a: v128, m: v128, b: v128, s: v128, nr: v128, relu: bool): v128 {
  const xc = v128.sub<T>(v128.load(px), c);
  return v128.mul<T>(a, nmadd<T>(b, xc, v128.sub<T>(maskedXc<T>(dout, xc, s, nr, relu), m)));
}

// @ts-ignore: decorator
@inline export function xcOr<T>(xc: v128, px: usize, c: v128, relu: bool): v128 {
  return relu ? xc : v128.sub<T>(v128.load(px), c);
}

/** The scalar masked. */
// @ts-ignore: decorator
@inline export function maskedOne<T>(dout: T, px: usize, c: T, s: T, nr: T, relu: bool): T {
  return relu && !((load<T>(px) - c) * s > nr) ? <T>0 : dout;
}
