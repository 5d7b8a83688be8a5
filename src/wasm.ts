// All WebAssembly plumbing: decode the embedded modules, pick a backend, instantiate once,
// and call kernels by pointer. Nothing else in the package touches a module or its memory
// except through an Engine's heap.
//
// Contract with assembly/index.ts: pointers are byte addresses in the engine's memory, 0 means
// "absent" (gamma/beta: 1 and 0; running statistics: not updated), work areas are 16-byte
// aligned and at least kernels.workBytes(dtype, d) long.
import { type WasmPart, wasmModules } from "./generated/binaries.js";
import { type Dtype } from "./dtype.js";
import { Heap, JsMemory } from "./memory.js";
import * as reference from "./reference.js";
import * as check from "./validate.js";

export type Backend = "simd" | "scalar" | "js";
export const BACKENDS: readonly Backend[] = ["simd", "scalar", "js"];

/** Backward forms, defined once with the plain-JS kernels; they match assembly/backward.ts. */
export { COMPACT_FORM, EVAL_FORM, GRAPH_FORM } from "./reference.js";

/**
 * Kernels on pointers into the engine's memory (see the contract above). Data is rows (n, d)
 * when S = 1, or channels-first (n, d, S) with contiguous runs of S values per channel.
 */
export interface Kernels {
  /** Bytes of work area every kernel needs for d columns of dtype. */
  workBytes(dtype: Dtype, d: number): number;
  forwardTrain(
    dtype: Dtype, x: number, n: number, d: number, S: number, gamma: number, beta: number, eps: number,
    momentum: number, runVarScale: number, runMean: number, runVar: number, out: number,
    mean: number, meanLo: number, variance: number, invStd: number, work: number,
  ): void;
  /**
   * With `again`, the map the last forwardTest computed in this work area is applied to other
   * rows of the same batch (a batch normalized in parts): the WASM builds skip the per-feature
   * constants. gamma … invStd must still be that call's (the 'js' backend reads them again).
   */
  forwardTest(
    dtype: Dtype, x: number, n: number, d: number, S: number, gamma: number, beta: number, eps: number,
    runMean: number, runVar: number, out: number, invStd: number, work: number, again?: boolean,
  ): void;
  backward(
    dtype: Dtype, form: number, dout: number, x: number, n: number, d: number, S: number, gamma: number,
    mean: number, meanLo: number, invStd: number, dx: number, dgamma: number, dbeta: number, work: number,
  ): void;
}

export interface Engine {
  readonly backend: Backend;
  readonly heap: Heap;
  readonly kernels: Kernels;
}

type WasmBuild = "simd" | "scalar";
type Kernel = (...args: number[]) => void;
/** What the modules export, each from its part (scripts/build-wasm.mjs splits them). */
interface WasmExports {
  heapBase(): number;
  workBytesF32(d: number): number;
  workBytesF64(d: number): number;
  trainMomentsF32: Kernel;
  trainMomentsF64: Kernel;
  trainPlaneMomentsF32: Kernel;
  trainPlaneMomentsF64: Kernel;
  trainConstantsF32: Kernel;
  trainConstantsF64: Kernel;
  testConstantsF32: Kernel;
  testConstantsF64: Kernel;
  normalizeF32: Kernel;
  normalizeF64: Kernel;
  backwardConstantsF32: Kernel;
  backwardConstantsF64: Kernel;
  backwardPlaneConstantsF32: Kernel;
  backwardPlaneConstantsF64: Kernel;
  backwardApplyF32: Kernel;
  backwardApplyF64: Kernel;
}

const PARTS = Object.keys(wasmModules.simd) as WasmPart[];

/** One engine over the instances of every part of a build, all on one shared memory. */
function wasmEngine(backend: WasmBuild, modules: WebAssembly.Module[]): Engine {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const instances = modules.map((m) => new WebAssembly.Instance(m, { env: { memory } }).exports as unknown as Partial<WasmExports>);
  const e = Object.assign({}, ...instances) as WasmExports;
  const heap = new Heap(memory, Math.max(16, ...instances.map((i) => i.heapBase!())));
  const f64 = (dtype: Dtype) => dtype === "float64";
  const kernels: Kernels = {
    workBytes: (dtype, d) => (f64(dtype) ? e.workBytesF64(d) : e.workBytesF32(d)) >>> 0,
    forwardTrain(dtype, x, n, d, S, gamma, beta, eps, momentum, runVarScale, runMean, runVar, out, mean, meanLo, variance, invStd, work) {
      if (S === 1) (f64(dtype) ? e.trainMomentsF64 : e.trainMomentsF32)(x, n, d, work);
      else (f64(dtype) ? e.trainPlaneMomentsF64 : e.trainPlaneMomentsF32)(x, n, d, S, work);
      (f64(dtype) ? e.trainConstantsF64 : e.trainConstantsF32)(
        d, gamma, beta, eps, momentum, runVarScale, runMean, runVar, mean, meanLo, variance, invStd, work,
      );
      (f64(dtype) ? e.normalizeF64 : e.normalizeF32)(x, n, d, S, work, out);
    },
    forwardTest(dtype, x, n, d, S, gamma, beta, eps, runMean, runVar, out, invStd, work, again) {
      if (!again) (f64(dtype) ? e.testConstantsF64 : e.testConstantsF32)(d, gamma, beta, eps, runMean, runVar, invStd, work);
      (f64(dtype) ? e.normalizeF64 : e.normalizeF32)(x, n, d, S, work, out);
    },
    backward(dtype, form, dout, x, n, d, S, gamma, mean, meanLo, invStd, dx, dgamma, dbeta, work) {
      if (S === 1) (f64(dtype) ? e.backwardConstantsF64 : e.backwardConstantsF32)(form, dout, x, n, d, gamma, mean, meanLo, invStd, dgamma, dbeta, work);
      else (f64(dtype) ? e.backwardPlaneConstantsF64 : e.backwardPlaneConstantsF32)(form, dout, x, n, d, S, gamma, mean, meanLo, invStd, dgamma, dbeta, work);
      if (dx) (f64(dtype) ? e.backwardApplyF64 : e.backwardApplyF32)(dout, x, n, d, S, mean, dx, work);
    },
  };
  return { backend, heap, kernels };
}

/** The plain-JS backend: the reference implementation on views of a JS memory. */
function jsEngine(): Engine {
  const heap = new Heap(new JsMemory(), 16);
  const v = (dtype: Dtype, ptr: number, length: number) => (ptr ? heap.view(dtype, ptr, length) : null);
  const kernels: Kernels = {
    workBytes: () => 16,
    forwardTrain(dtype, x, n, d, S, gamma, beta, eps, momentum, runVarScale, runMean, runVar, out, mean, meanLo, variance, invStd) {
      reference.forwardTrain(
        v(dtype, x, n * d * S)!, n, d, S, v(dtype, gamma, d), v(dtype, beta, d), eps, momentum, runVarScale,
        v(dtype, runMean, d), v(dtype, runVar, d), v(dtype, out, n * d * S)!,
        v(dtype, mean, d)!, v(dtype, meanLo, d)!, v(dtype, variance, d)!, v(dtype, invStd, d)!,
      );
    },
    forwardTest(dtype, x, n, d, S, gamma, beta, eps, runMean, runVar, out, invStd) {
      const rv = v(dtype, runVar, d)!;
      reference.forwardTest(
        v(dtype, x, n * d * S)!, n, d, S, v(dtype, gamma, d), v(dtype, beta, d), eps, v(dtype, runMean, d)!, rv, v(dtype, out, n * d * S)!,
      );
      const inv = v(dtype, invStd, d);
      if (inv) for (let j = 0; j < d; j++) inv[j] = 1 / Math.sqrt(rv[j] + eps);
    },
    backward(dtype, form, dout, x, n, d, S, gamma, mean, meanLo, invStd, dx, dgamma, dbeta) {
      reference.backward(
        form, v(dtype, dout, n * d * S)!, v(dtype, x, n * d * S)!, n, d, S, v(dtype, gamma, d),
        v(dtype, mean, d)!, v(dtype, meanLo, d)!, v(dtype, invStd, d)!,
        v(dtype, dx, n * d * S), v(dtype, dgamma, d), v(dtype, dbeta, d),
      );
    },
  };
  return { backend: "js", heap, kernels };
}

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

const decoded = new Map<string, Uint8Array<ArrayBuffer>>();
function bytesOf(build: WasmBuild, part: WasmPart): Uint8Array<ArrayBuffer> {
  const key = `${build}.${part}`;
  let bytes = decoded.get(key);
  if (!bytes) decoded.set(key, (bytes = decodeBase64(wasmModules[build][part])));
  return bytes;
}

/** Which backends this JavaScript engine can run, best first. */
export function supportedBackends(): Backend[] {
  const list: Backend[] = [];
  if (typeof WebAssembly === "object") {
    if (WebAssembly.validate(bytesOf("simd", "f32-statistics"))) list.push("simd");
    if (WebAssembly.validate(bytesOf("scalar", "f32-statistics"))) list.push("scalar");
  }
  list.push("js");
  return list;
}

export interface InitOptions {
  /** Force a backend; by default the best supported one (simd, then scalar, then js). */
  backend?: Backend;
}

const engines = new Map<Backend, Engine>();
let active: Engine | null = null;

function chooseBackend(options: InitOptions | undefined): Backend {
  if (options !== undefined && (options === null || typeof options !== "object")) {
    throw new TypeError("init: options must be an object like { backend: 'simd' | 'scalar' | 'js' }");
  }
  if (options !== undefined) check.knownKeys("init options", options, ["backend"]);
  const wanted = options?.backend;
  const supported = supportedBackends();
  if (wanted === undefined) return supported[0];
  if (!BACKENDS.includes(wanted)) {
    throw new TypeError(`init: backend must be 'simd', 'scalar' or 'js', got ${JSON.stringify(wanted)}`);
  }
  if (!supported.includes(wanted)) {
    throw new Error(`init: backend '${wanted}' is not supported by this JavaScript engine (supported: ${supported.join(", ")})`);
  }
  return wanted;
}

/**
 * Makes `backend` the active one for the functional API and new layers. Idempotent: each
 * backend is instantiated once. Layers keep the engine they were created with.
 */
export function initSync(options?: InitOptions): Backend {
  const backend = chooseBackend(options);
  let engine = engines.get(backend);
  if (!engine) {
    engine = backend === "js"
      ? jsEngine()
      : wasmEngine(backend, PARTS.map((part) => new WebAssembly.Module(bytesOf(backend as WasmBuild, part))));
    engines.set(backend, engine);
  }
  active = engine;
  return backend;
}

/** As initSync, compiling the module asynchronously (for browsers' main threads). */
export async function init(options?: InitOptions): Promise<Backend> {
  const backend = chooseBackend(options);
  if (!engines.has(backend) && backend !== "js") {
    const modules = await Promise.all(PARTS.map((part) => WebAssembly.compile(bytesOf(backend as WasmBuild, part))));
    if (!engines.has(backend)) engines.set(backend, wasmEngine(backend as WasmBuild, modules));
  }
  return initSync({ backend });
}

/** The active backend; initializes the best one on first use. */
export function backend(): Backend {
  return engine().backend;
}

/** The active engine; initializes the best backend on first use. */
export function engine(): Engine {
  if (!active) initSync();
  return active!;
}
