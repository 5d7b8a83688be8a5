// batchnorm-wasm/tfjs: a drop-in replacement for tf.layers.batchNormalization whose forward
// and backward are this package's kernels, joined to TensorFlow.js through tf.customGrad.
//
// The class extends tfjs-layers' own BatchNormalization, so config parsing, weights (gamma,
// beta, moving_mean, moving_variance), initializers, regularizers, constraints and getConfig
// are the stock layer's, byte for byte; only call() differs. Data goes in and out by
// dataSync() and tf.tensor (on tfjs-cpu neither copies; on tfjs-wasm both do, but reads
// take a view of tfjs-wasm's memory where its backend offers one, see read()). Backends
// whose data lives elsewhere (webgl, webgpu, tensorflow) get the stock math, written with
// tf ops so that it also covers rank 5 and center/scale = false.
//
// Only the package's public API is used, so this file follows the kernels' signatures, not
// their internals. Nothing here runs at import except registering the class under its own
// name: the stock layer is replaced only by an explicit useForStockLayers().
import * as tfc from "@tensorflow/tfjs-core";
import { layers } from "@tensorflow/tfjs-layers";
import {
  type BatchnormCache, type BNParam, batchnormBackwardAlt, batchnormForward, spatialBatchnormBackward, spatialBatchnormForward,
} from "./index.js";

/** The config of tf.layers.batchNormalization (axis, momentum, epsilon, center, scale, initializers, …). */
export type BatchNormalizationArgs = NonNullable<Parameters<typeof layers.batchNormalization>[0]>;
type StockLayer = ReturnType<typeof layers.batchNormalization>;
type Kwargs = Parameters<StockLayer["call"]>[1];
type LayerVariable = ReturnType<StockLayer["addWeight"]>;

/** The stock layer's fields this file reads; they are private in its typings. */
interface StockFields {
  axis: number;
  momentum: number;
  epsilon: number;
  center: boolean;
  scale: boolean;
  gamma?: LayerVariable;
  beta?: LayerVariable;
  movingMean?: LayerVariable;
  movingVariance?: LayerVariable;
}

/** Marks this file's classes, so that a second copy of it (ESM and CJS) still finds the stock class. */
const OURS = Symbol.for("batchnorm-wasm/tfjs");
type StockConstructor = (new (args?: BatchNormalizationArgs) => StockLayer) & Pick<typeof layers.Layer, "fromConfig"> & {
  className: string;
  [OURS]?: true;
};

function stockClass(): StockConstructor {
  // tfjs-layers exports the factory, not the class; its serialization map holds the class
  // (registered when tfjs-layers loads) without making an instance, which would shift the
  // automatic names of the user's layers.
  const entry = tfc.serialization.SerializationMap.getMap().classNameMap.BatchNormalization;
  let cls = entry?.[0] as unknown as StockConstructor | undefined;
  while (cls && cls[OURS]) cls = Object.getPrototypeOf(cls) as StockConstructor;
  if (typeof cls !== "function" || !(cls.prototype instanceof layers.Layer)) {
    throw new Error("batchnorm-wasm/tfjs: @tensorflow/tfjs-layers did not register its BatchNormalization class (is @tensorflow/tfjs-layers 4.x installed?)");
  }
  return cls;
}

const Stock = stockClass();

/** The tfjs backends whose tensors the kernels read through dataSync() without a GPU download. */
export const kernelBackends: Set<string> = new Set(["cpu", "wasm"]);

/**
 * On tfjs-wasm, read tensors through a view of its memory (its backend's typedArrayFromHeap)
 * instead of dataSync()'s copy; false: always dataSync(). Results are the same either way.
 */
export const wasmDirectReads = {
  /** Whether to read through the view (default true). */
  enabled: true,
};

/**
 * A float32 tensor's values, to be read before tfjs allocates again (a view of tfjs-wasm's
 * memory is detached when that memory grows; the kernels copy what they read at once).
 * typedArrayFromHeap is an internal of tfjs-wasm 4.x: feature-checked, and any surprise
 * falls back to dataSync().
 */
/** Arrays read() handed out as views of tfjs-wasm's memory. */
const heapViews = new WeakSet<Float32Array>();

function read(t: tfc.Tensor): Float32Array {
  if (wasmDirectReads.enabled && t.dtype === "float32" && tfc.getBackend() === "wasm" && tfc.version_core.startsWith("4.")) {
    const wasm = tfc.backend() as unknown as { typedArrayFromHeap?: (info: tfc.TensorInfo) => unknown };
    if (typeof wasm.typedArrayFromHeap === "function") {
      try {
        const view = wasm.typedArrayFromHeap({ dataId: t.dataId, shape: t.shape, dtype: "float32" });
        if (view instanceof Float32Array && view.length === t.size) {
          heapViews.add(view);
          return view;
        }
      } catch {
        // Not in tfjs-wasm's memory (yet): dataSync() moves it there.
      }
    }
  }
  return t.dataSync() as Float32Array;
}

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : value === null ? "null" : typeof value === "object" ? "an object" : String(value);
}

/** Refuses what the stock layer would take silently and then compute nonsense with. */
function checked(args: BatchNormalizationArgs | undefined): BatchNormalizationArgs | undefined {
  if (args === undefined) return args;
  if (args === null || typeof args !== "object") {
    throw new TypeError(`batchNormalization: config must be an object like { axis: -1 }, got ${describe(args)}`);
  }
  const { axis, momentum, epsilon, center, scale, dtype } = args;
  if (axis != null && !Number.isInteger(axis)) throw new TypeError(`batchNormalization: axis must be an integer, got ${describe(axis)}`);
  if (momentum != null && !(typeof momentum === "number" && momentum >= 0 && momentum <= 1)) {
    throw new RangeError(`batchNormalization: momentum must be a number in [0, 1], got ${describe(momentum)}`);
  }
  if (epsilon != null && !(typeof epsilon === "number" && Number.isFinite(epsilon) && epsilon >= 0)) {
    throw new RangeError(`batchNormalization: epsilon must be a finite number ≥ 0, got ${describe(epsilon)}`);
  }
  for (const [name, value] of [["center", center], ["scale", scale]] as const) {
    if (value != null && typeof value !== "boolean") throw new TypeError(`batchNormalization: ${name} must be true or false, got ${describe(value)}`);
  }
  // The kernels used here are float32 ones, as tfjs layers' weights are.
  if (dtype != null && dtype !== "float32") throw new TypeError(`batchNormalization: dtype must be 'float32', got ${describe(dtype)}`);
  return args;
}

/** Where channel axis k of shape falls in the kernels' view: rows (outer, C) when inner is 1, else (outer, C, inner). */
function view(shape: readonly number[], k: number) {
  const outer = shape.slice(0, k).reduce((a, b) => a * b, 1);
  const inner = shape.slice(k + 1).reduce((a, b) => a * b, 1);
  return { outer, C: shape[k], inner };
}

/**
 * tf.layers.batchNormalization with this package's kernels. Same config, weights, training
 * semantics (moving statistics move only on calls with training: true, as model.fit makes)
 * and serialized config; registered as 'BatchNormalizationWasm'. Also takes inputs of rank 5
 * and center or scale false in training, which the stock layer refuses.
 */
export class BatchNormalization extends (Stock as StockConstructor) {
  /** The name the layer is serialized and registered under. @nocollapse */
  static override className = "BatchNormalizationWasm";
  /** @internal */
  static readonly [OURS] = true;

  constructor(args?: BatchNormalizationArgs) {
    super(checked(args));
  }

  private get fields(): StockFields {
    return this as unknown as StockFields;
  }

  /** The channel axis for inputs of `rank`, counted from 0; refuses ranks and axes the layer cannot take. */
  private channelAxis(rank: number): number {
    const { axis } = this.fields;
    if (rank < 2) throw new RangeError(`${this.name}: input must have rank 2 or more (batch and channels), got rank ${rank}`);
    const k = axis < 0 ? axis + rank : axis;
    if (k < 0 || k >= rank) throw new RangeError(`${this.name}: axis ${axis} is out of range for input of rank ${rank}`);
    return k;
  }

  /** Creates the stock layer's weights (gamma, beta, moving_mean, moving_variance), after checking the axis against the input's rank. */
  override build(inputShape: Parameters<StockLayer["build"]>[0]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as (number | null)[];
    this.channelAxis(shape.length);
    super.build(inputShape);
    const f = this.fields;
    // Feature check on the stock layer's private fields: a tfjs that renamed them fails here, clearly.
    if (!f.movingMean || !f.movingVariance || (f.scale && !f.gamma) || (f.center && !f.beta)) {
      throw new Error("batchnorm-wasm/tfjs: this version of @tensorflow/tfjs-layers keeps its BatchNormalization weights elsewhere; unsupported");
    }
  }

  /** The layer's output; with kwargs.training true, batch statistics (and the moving statistics move), else the moving ones. Runs this package's kernels on tfjs-cpu and tfjs-wasm, the stock math elsewhere. */
  override call(inputs: tfc.Tensor | tfc.Tensor[], kwargs: Kwargs): tfc.Tensor {
    return tfc.tidy(() => {
      const input = Array.isArray(inputs) ? inputs[0] : inputs;
      if (Array.isArray(inputs) && inputs.length !== 1) throw new TypeError(`${this.name}: expects exactly one input tensor, got ${inputs.length}`);
      const x = input.dtype === "float32" ? input : tfc.cast(input, "float32");
      const training = kwargs?.training == null ? false : Boolean(kwargs.training);
      const k = this.channelAxis(x.rank);
      if (!kernelBackends.has(tfc.getBackend())) return this.stockMath(x, k, training);
      return training ? this.trainWithKernels(x, k) : this.inferWithKernels(x, k);
    });
  }

  /** gamma and beta as the kernels take them: 1 and 0 when scale or center is off. */
  private affine(C: number) {
    const { gamma, beta } = this.fields;
    return {
      gamma: gamma ? gamma.read() : null,
      beta: beta ? beta.read() : null,
      ones: () => new Float32Array(C).fill(1),
      zeros: () => new Float32Array(C),
    };
  }

  private trainWithKernels(x: tfc.Tensor, k: number): tfc.Tensor {
    const f = this.fields;
    const shape = x.shape;
    const { outer, C, inner } = view(shape, k);
    const { gamma, beta, ones, zeros } = this.affine(C);
    const present = [gamma, beta].filter((t): t is tfc.Variable => t !== null);
    // The kernel updates the running statistics in place, so they are copies: on tfjs-cpu,
    // dataSync() hands out the tensor's own array.
    const bnParam: BNParam<Float32Array> = {
      mode: "train", eps: f.epsilon, momentum: f.momentum,
      runningMean: read(f.movingMean!.read()).slice(), runningVar: read(f.movingVariance!.read()).slice(),
    };
    const op = tfc.customGrad((...args: (tfc.Tensor | tfc.GradSaveFunc)[]) => {
      const xs = args[0] as tfc.Tensor;
      const g = gamma ? read(gamma) : ones();
      const b = beta ? read(beta) : zeros();
      // The cache refers to x until the backward: a view of tfjs-wasm's memory would be
      // detached by its next growth, so that one is copied.
      const read0 = read(xs);
      const xData = heapViews.has(read0) ? read0.slice() : read0;
      let cache: BatchnormCache<Float32Array> | null;
      let out: Float32Array;
      if (inner === 1) ({ out, cache } = batchnormForward(xData, g, b, bnParam));
      else ({ out, cache } = spatialBatchnormForward(xData, g, b, bnParam, [outer, C, inner], "NCL"));
      return {
        value: tfc.tensor(out, shape, "float32"),
        gradFunc: (dy: tfc.Tensor | tfc.Tensor[]) => {
          const d = read(Array.isArray(dy) ? dy[0] : dy);
          const r = inner === 1 ? batchnormBackwardAlt(d, cache!) : spatialBatchnormBackward(d, cache!);
          const grads = [tfc.tensor(r.dx, shape, "float32")];
          if (gamma) grads.push(tfc.tensor(r.dgamma, [C], "float32"));
          if (beta) grads.push(tfc.tensor(r.dbeta, [C], "float32"));
          return grads;
        },
      };
    });
    const out = op(x, ...present);
    // The kernel moved the copies: moving = momentum·moving + (1 − momentum)·batch, with the
    // biased batch variance, as the stock layer's doMovingAverage.
    f.movingMean!.write(tfc.tensor(bnParam.runningMean!, [C], "float32"));
    f.movingVariance!.write(tfc.tensor(bnParam.runningVar!, [C], "float32"));
    return out;
  }

  private inferWithKernels(x: tfc.Tensor, k: number): tfc.Tensor {
    const f = this.fields;
    const shape = x.shape;
    const { outer, C, inner } = view(shape, k);
    const { gamma, beta, ones, zeros } = this.affine(C);
    const present = [gamma, beta].filter((t): t is tfc.Variable => t !== null);
    const mean = f.movingMean!.read();
    const variance = f.movingVariance!.read();
    const op = tfc.customGrad((...args: (tfc.Tensor | tfc.GradSaveFunc)[]) => {
      const xs = args[0] as tfc.Tensor;
      // Kept for the backward: x may be an intermediate that its tidy disposes before then.
      (args.at(-1) as tfc.GradSaveFunc)([xs]);
      const g = gamma ? read(gamma) : ones();
      const b = beta ? read(beta) : zeros();
      const bnParam: BNParam<Float32Array> = { mode: "test", eps: f.epsilon, runningMean: read(mean), runningVar: read(variance) };
      const xData = read(xs);
      const { out } = inner === 1
        ? batchnormForward(xData, g, b, bnParam)
        : spatialBatchnormForward(xData, g, b, bnParam, [outer, C, inner], "NCL");
      return {
        value: tfc.tensor(out, shape, "float32"),
        // Inference is affine in x; its gradient is a few elementwise ops (the package has
        // no test-mode backward), e.g. for fine-tuning around a frozen layer.
        gradFunc: (dy: tfc.Tensor | tfc.Tensor[], saved: tfc.Tensor[]) => {
          const d = Array.isArray(dy) ? dy[0] : dy;
          const [xSaved] = saved;
          const b3 = [outer, C, inner];
          const invStd = tfc.rsqrt(tfc.add(variance, f.epsilon));
          const d3 = tfc.reshape(d, b3);
          const toC = (t: tfc.Tensor) => tfc.reshape(t, [1, C, 1]);
          const scaleC = gamma ? tfc.mul(gamma, invStd) : invStd;
          const grads = [tfc.reshape(tfc.mul(d3, toC(scaleC)), shape)];
          if (gamma) {
            const xhat = tfc.mul(tfc.sub(tfc.reshape(xSaved, b3), toC(mean)), toC(invStd));
            grads.push(tfc.sum(tfc.mul(d3, xhat), [0, 2]));
          }
          if (beta) grads.push(tfc.sum(d3, [0, 2]));
          return grads;
        },
      };
    });
    return op(x, ...present);
  }

  /**
   * The stock layer's math in tf ops (tf.moments, then (x − mean)·rsqrt(var + ε)·γ + β, and
   * the same moving average), for backends whose data the kernels cannot reach cheaply.
   */
  private stockMath(x: tfc.Tensor, k: number, training: boolean): tfc.Tensor {
    const f = this.fields;
    const { outer, C, inner } = view(x.shape, k);
    const x3 = tfc.reshape(x, [outer, C, inner]);
    const toC = (t: tfc.Tensor) => tfc.reshape(t, [1, C, 1]);
    let mean: tfc.Tensor = f.movingMean!.read();
    let variance: tfc.Tensor = f.movingVariance!.read();
    if (training) {
      ({ mean, variance } = tfc.moments(x3, [0, 2]));
      const decay = 1 - f.momentum;
      for (const [w, batch] of [[f.movingMean!, mean], [f.movingVariance!, variance]] as const) {
        const old = w.read();
        w.write(tfc.sub(old, tfc.mul(tfc.sub(old, batch), decay)));
      }
    }
    let y = tfc.mul(tfc.sub(x3, toC(mean)), toC(tfc.rsqrt(tfc.add(variance, f.epsilon))));
    if (f.gamma) y = tfc.mul(y, toC(f.gamma.read()));
    if (f.beta) y = tfc.add(y, toC(f.beta.read()));
    return tfc.reshape(y, x.shape);
  }
}
tfc.serialization.registerClass(BatchNormalization);

/** As tf.layers.batchNormalization(config), with this package's kernels. */
export function batchNormalization(config?: BatchNormalizationArgs): BatchNormalization {
  return new BatchNormalization(config);
}

/**
 * The class built for layers saved as 'BatchNormalization' after useForStockLayers(). It
 * serializes under that name again, so a model loaded, trained and saved stays loadable by
 * plain TensorFlow.js and Keras.
 */
export class StockNamedBatchNormalization extends BatchNormalization {
  /** The stock layer's name, so that models saved with it load as this class. @nocollapse */
  static override className = "BatchNormalization";
}

/**
 * Opt-in: from now on tf.loadLayersModel (and every deserialization) builds this layer for
 * layers saved with the stock 'BatchNormalization'. Returns a function that restores the
 * stock class. Layers made by tf.layers.batchNormalization() are not affected.
 */
export function useForStockLayers(): () => void {
  const map = tfc.serialization.SerializationMap.getMap().classNameMap;
  const previous = map.BatchNormalization;
  map.BatchNormalization = [StockNamedBatchNormalization as never, StockNamedBatchNormalization.fromConfig as never];
  return () => {
    map.BatchNormalization = previous;
  };
}
