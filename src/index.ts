// batchnorm-wasm: batch normalization (CS231n formulation) with WebAssembly SIMD kernels.
export { init, initSync, backend, supportedBackends, type Backend, type InitOptions } from "./wasm.js";
export {
  batchnormForward, batchnormBackward, batchnormBackwardAlt, spatialBatchnormForward, spatialBatchnormBackward,
  BatchnormCache, type BNParam, type ForwardResult, type TrainResult, type BackwardResult, type ForwardOutputs, type RowForwardOptions, type BackwardOutputs,
} from "./functional.js";
export { BatchNorm, type BatchNormOptions, type LayerForwardOptions } from "./layer.js";
export { BatchNormWorkspace } from "./workspace.js";
export { ChangedInputError } from "./step.js";
export { foldBatchNorm, type BatchNormEvalState, type PreviousLayer, type FoldedLayer, type WeightLayout } from "./fold.js";
export type { RunningStatsOptions, PyTorchState, KerasState } from "./conventions.js";
export type { Layout } from "./shape.js";
export type { Dtype, FloatArray } from "./dtype.js";
export * as reference from "./reference.js";
export {
  localStatistics, mergeStatistics, syncBatchnormForward, localGradientSums, sumGradientSums, syncBatchnormBackward, SyncBatchNorm,
  SyncBatchnormCache, type SyncShapeOptions, type SyncForwardOptions, type SyncForwardResult,
} from "./sync.js";
export {
  layernormForward, layernormBackward, NormCache, type LNParam, type NormForwardResult, type LayernormForwardOptions,
} from "./layernorm.js";
export { spatialGroupnormForward, spatialGroupnormBackward, type GNParam } from "./groupnorm.js";
export type { Activation } from "./kernels.js";
export { threads } from "./wasm.js";
export { ThreadError } from "./threads.js";
export {
  LayerNorm, GroupNorm, InstanceNorm, type LayerNormOptions, type GroupNormOptions, type InstanceNormOptions, type NormLayerForwardOptions,
  type NormLayerStateInput, type NestedNumbers,
} from "./norm-layers.js";
export { NormWorkspace } from "./norm-workspace.js";
export { simdBuild } from "./wasm.js";
