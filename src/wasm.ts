// All WebAssembly plumbing: decode the embedded modules, pick a backend, instantiate once,
// and call kernels by pointer. Nothing else in the package touches a module or its memory
// except through an Engine's heap.
//
// Contract with assembly/index.ts: pointers are byte addresses in the engine's memory, 0 means
// "absent" (gamma/beta: 1 and 0; running statistics: not updated), work areas are 16-byte
// aligned and at least kernels.workBytes(dtype, d) long.
import { scalarWasm, simdWasm } from "./generated/binaries.js";
import { type Dtype } from "./dtype.js";
import { Heap, JsMemory } from "./memory.js";
import * as reference from "./reference.js";

export type Backend = "simd" | "scalar" | "js";
export const BACKENDS: readonly Backend[] = ["simd", "scalar", "js"];

/** Backward forms; must match assembly/backward.ts. */
export const GRAPH_FORM = 0;
export const COMPACT_FORM = 1;
export const EVAL_FORM = 2;

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
  forwardTest(
    dtype: Dtype, x: number, n: number, d: number, S: number, gamma: number, beta: number, eps: number,
    runMean: number, runVar: number, out: number, work: number,
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

interface WasmExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  workBytesF32(d: number): number;
  workBytesF64(d: number): number;
  forwardTrainF32: (...args: number[]) => void;
  forwardTrainF64: (...args: number[]) => void;
  forwardTestF32: (...args: number[]) => void;
  forwardTestF64: (...args: number[]) => void;
  backwardF32: (...args: number[]) => void;
  backwardF64: (...args: number[]) => void;
}

function wasmEngine(backend: "simd" | "scalar", instance: WebAssembly.Instance): Engine {
  const e = instance.exports as unknown as WasmExports;
  const heap = new Heap(e.memory, Math.max(e.heapBase(), 16));
  const kernels: Kernels = {
    workBytes: (dtype, d) => (dtype === "float64" ? e.workBytesF64(d) : e.workBytesF32(d)) >>> 0,
    forwardTrain: (dtype, ...args) => (dtype === "float64" ? e.forwardTrainF64 : e.forwardTrainF32)(...args),
    forwardTest: (dtype, ...args) => (dtype === "float64" ? e.forwardTestF64 : e.forwardTestF32)(...args),
    backward: (dtype, ...args) => (dtype === "float64" ? e.backwardF64 : e.backwardF32)(...args),
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
    forwardTest(dtype, x, n, d, S, gamma, beta, eps, runMean, runVar, out) {
      reference.forwardTest(
        v(dtype, x, n * d * S)!, n, d, S, v(dtype, gamma, d), v(dtype, beta, d), eps,
        v(dtype, runMean, d)!, v(dtype, runVar, d)!, v(dtype, out, n * d * S)!,
      );
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

const moduleBytes: Record<"simd" | "scalar", string> = { simd: simdWasm, scalar: scalarWasm };
const decoded = new Map<"simd" | "scalar", Uint8Array<ArrayBuffer>>();
function bytesOf(backend: "simd" | "scalar"): Uint8Array<ArrayBuffer> {
  let bytes = decoded.get(backend);
  if (!bytes) decoded.set(backend, (bytes = decodeBase64(moduleBytes[backend])));
  return bytes;
}

/** Which backends this JavaScript engine can run, best first. */
export function supportedBackends(): Backend[] {
  const list: Backend[] = [];
  if (typeof WebAssembly === "object") {
    if (WebAssembly.validate(bytesOf("simd"))) list.push("simd");
    if (WebAssembly.validate(bytesOf("scalar"))) list.push("scalar");
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
      : wasmEngine(backend, new WebAssembly.Instance(new WebAssembly.Module(bytesOf(backend as "simd" | "scalar")), {}));
    engines.set(backend, engine);
  }
  active = engine;
  return backend;
}

/** As initSync, compiling the module asynchronously (for browsers' main threads). */
export async function init(options?: InitOptions): Promise<Backend> {
  const backend = chooseBackend(options);
  if (!engines.has(backend) && backend !== "js") {
    const module = await WebAssembly.compile(bytesOf(backend as "simd" | "scalar"));
    const instance = await WebAssembly.instantiate(module, {});
    if (!engines.has(backend)) engines.set(backend, wasmEngine(backend as "simd" | "scalar", instance));
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
