// The running-statistics conventions that differ between CS231n, PyTorch, Keras and ONNX,
// each an explicit option with CS231n's behaviour as the default.
import * as check from "./validate.js";

export interface RunningStatsOptions {
  /**
   * How fast the running statistics move; default 0.9. null: the cumulative average of all
   * batches so far (PyTorch's momentum=None), counted by numBatchesTracked.
   */
  momentum?: number | null;
  /**
   * 'cs231n' (default, also Keras and ONNX): running = momentum·running + (1 − momentum)·batch.
   * 'pytorch': momentum is the weight of the new batch, running = (1 − momentum)·running + momentum·batch.
   */
  momentumConvention?: "cs231n" | "pytorch";
  /**
   * The batch variance that goes into the running average: 'biased' (÷ n, default; CS231n,
   * Keras, ONNX) or 'unbiased' (÷ (n − 1), PyTorch), n = N·H·W. Normalization always uses
   * the biased one.
   */
  runningVariance?: "biased" | "unbiased";
}

export interface RunningStatsRule {
  momentum: number | null;
  convention: "cs231n" | "pytorch";
  unbiased: boolean;
}

export function runningStatsRule(options: RunningStatsOptions, prefix: string, defaultMomentum: number): RunningStatsRule {
  const momentum = options.momentum === null ? null : check.momentum(options.momentum ?? defaultMomentum, `${prefix}momentum`);
  const convention = options.momentumConvention ?? "cs231n";
  if (convention !== "cs231n" && convention !== "pytorch") {
    throw new RangeError(`${prefix}momentumConvention must be 'cs231n' or 'pytorch', got ${JSON.stringify(convention)}`);
  }
  const variance = options.runningVariance ?? "biased";
  if (variance !== "biased" && variance !== "unbiased") {
    throw new RangeError(`${prefix}runningVariance must be 'biased' or 'unbiased', got ${JSON.stringify(variance)}`);
  }
  return { momentum, convention, unbiased: variance === "unbiased" };
}

/**
 * The kernels' momentum (the weight of the old running value) for the step that makes
 * `batchesTracked` batches, and the factor on the batch variance.
 */
export function stepFactors(rule: RunningStatsRule, batchesTracked: number, count: number, shape: readonly number[]) {
  checkBatchCount(rule, count, shape);
  const momentum = rule.momentum === null
    ? 1 - 1 / batchesTracked
    : rule.convention === "pytorch" ? 1 - rule.momentum : rule.momentum;
  return { momentum, runVarScale: rule.unbiased ? count / (count - 1) : 1 };
}

/**
 * PyTorch's rule (the unbiased convention): batch statistics of one value per channel are
 * refused, whether or not they move running statistics (without running statistics, PyTorch
 * normalizes with batch statistics in eval mode too).
 */
export function checkBatchCount(rule: RunningStatsRule, count: number, shape: readonly number[]): void {
  if (rule.unbiased && count === 1) {
    // PyTorch's own words, for the same case.
    throw new RangeError(`Expected more than 1 value per channel when training, got input size [${shape.join(", ")}]`);
  }
}
