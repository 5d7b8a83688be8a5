// Spatial group normalization, CS231n-style: spatialGroupnormForward / spatialGroupnormBackward
// for (N, C, H, W) or (N, C, L) data. Each sample's C channels are split into G groups of C/G
// channels; statistics per (sample, group) over the group's channels and positions; gamma
// and beta per channel. InstanceNorm is the case G = C. Channels-first data is the kernels'
// (n, G, K, S) view, channels-last data (n, S, G, K) (kernels in assembly/groupnorm.ts).
import type { FloatArray } from "./dtype.js";
import type { BackwardOutputs, BackwardResult, ForwardOutputs } from "./functional.js";
import type { GroupGeometry } from "./group-step.js";
import { type NormCache, type NormForwardResult, checkParams, epsOf, normBackward, normForward, optionsOf } from "./layernorm.js";
import { type Layout, channelsLast, checkLayout, geometry } from "./shape.js";
import * as check from "./validate.js";

/** The state object of spatialGroupnormForward, as CS231n's gn_param; any other key is refused. */
export interface GNParam {
  /** Added to the variance; default 1e-5 (PyTorch's). */
  eps?: number;
}

/**
 * The kernels' view of (N, C, ...spatial) data in groups of C/G channels, checked: G a
 * positive integer dividing C, shape [N, C], [N, C, L] or [N, C, H, W] of x.length values.
 */
export function groupGeometry(length: number, C: number, G: unknown, shape: unknown, layout: Layout, name = "G"): GroupGeometry {
  const groups = check.positiveInteger(name, G);
  if (C % groups !== 0) throw new RangeError(`${name} = ${groups} must divide the number of channels C = ${C} (C/G channels per group)`);
  if (!Array.isArray(shape)) throw new RangeError(`shape must be [N, C, H, W], [N, C, L] or [N, C], got ${check.shown(shape)}`);
  geometry(length, C, shape, layout);
  const S = shape.slice(2).reduce((a: number, b: number) => a * b, 1);
  return { n: shape[0], G: groups, K: C / groups, S, channelsLast: channelsLast(layout) && S > 1 };
}

/**
 * Spatial group normalization (CS231n's spatial_groupnorm_forward, PyTorch's F.group_norm):
 * x of logical shape [N, C, H, W] or [N, C, L], stored as `layout` says ('NCHW' / 'NCL',
 * default, or 'NHWC' / 'NLC'); G groups, G dividing C; gamma and beta of C values (CS231n's
 * (1, C, 1, 1) arrays hold the same C values). `outputs.out` is written into when given.
 */
export function spatialGroupnormForward<A extends FloatArray>(
  x: A, gamma: A, beta: A, G: number, gnParam: GNParam | undefined, shape: readonly number[], layout: Layout = "NCHW", outputs?: ForwardOutputs<A>,
): NormForwardResult<A> {
  const { dtype, d } = checkParams(x, gamma, beta, "channel (C = gamma.length)");
  const eps = epsOf("gnParam", gnParam);
  const g = groupGeometry(x.length, d, G, shape, checkLayout(layout));
  const given = optionsOf("spatialGroupnormForward outputs", outputs, ["out"]);
  const out = given.out === undefined ? undefined : check.output("outputs.out", given.out, dtype, x.length, { x, gamma, beta }, []);
  return normForward(x, gamma, beta, g, shape, eps, out, { gamma: true, beta: true }) as NormForwardResult<A>;
}

/** Backward of spatialGroupnormForward: dx of x's shape and layout, dgamma and dbeta of C values each. */
export function spatialGroupnormBackward<A extends FloatArray>(dout: A, cache: NormCache<A>, outputs?: BackwardOutputs<A>): BackwardResult<A> {
  return normBackward("spatialGroupnormBackward", dout, cache, outputs) as BackwardResult<A>;
}
