// All WebAssembly plumbing: decode the embedded modules, pick a backend, instantiate once,
// and bind the kernels of the registry (src/kernels.ts). Nothing else in the package touches
// a module or its memory except through an Engine's heap.
import { type WasmPart, wasmModules } from "./generated/binaries.js";
import { type Dtype } from "./dtype.js";
import { type Bound, CHECKSUM_WORDS, type KernelName, type Kernels, KERNELS, SUFFIX, type TypedKernel } from "./kernels.js";
import { Heap, JsMemory } from "./memory.js";
import * as reference from "./reference.js";
import * as check from "./validate.js";

/** A kernel implementation: 'simd' (WebAssembly with 128-bit SIMD), 'scalar' (WebAssembly without SIMD) or 'js' (plain JavaScript). */
export type Backend = "simd" | "scalar" | "js";
export const BACKENDS: readonly Backend[] = ["simd", "scalar", "js"];

export interface Engine {
  readonly backend: Backend;
  readonly heap: Heap;
  readonly kernels: Kernels;
}

type WasmBuild = "simd" | "scalar";

const PARTS = Object.keys(wasmModules.simd) as WasmPart[];

/** One engine over the instances of every part of a build, all on one shared memory. */
function wasmEngine(backend: WasmBuild, modules: WebAssembly.Module[]): Engine {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const instances = modules.map((m) => new WebAssembly.Instance(m, { env: { memory } }).exports);
  const exports = Object.assign({}, ...instances) as Record<string, (...args: number[]) => number>;
  const heap = new Heap(memory, Math.max(16, ...instances.map((i) => (i.heapBase as () => number)())));
  const bind = <K extends KernelName>(name: K, dtype: Dtype): Bound<K> =>
    KERNELS[name].bind(exports[name + SUFFIX[dtype]]) as Bound<K>;
  const both = <K extends KernelName>(name: K) => ({ float32: bind(name, "float32"), float64: bind(name, "float64") });
  const typed = (Object.keys(KERNELS) as KernelName[]).filter((name) => !("untyped" in KERNELS[name])) as TypedKernel[];
  const k = Object.fromEntries(typed.map((name) => [name, both(name)])) as { [K in TypedKernel]: Record<Dtype, Bound<K>> };
  const checksum = KERNELS.checksumWords.bind(exports.checksumWords);
  const kernels: Kernels = {
    workBytes: (dtype, shape, step) => k.workBytes[dtype](shape, step),
    forwardTrain(dtype, shape, p, f, activation = "none") {
      if (shape.S === 1) k.trainMoments[dtype](shape, p);
      else k.trainPlaneMoments[dtype](shape, p);
      k.trainConstants[dtype](shape, p, f);
      if (activation === "relu") k.normalizeRelu[dtype](shape, p);
      else k.normalize[dtype](shape, p);
    },
    forwardTest(dtype, shape, p, eps, again, activation = "none") {
      if (!again) k.testConstants[dtype](shape, p, eps);
      // The fused map from the saved values: the running mean, meanLo 0, the running invStd.
      if (activation === "relu") k.normalizeRelu[dtype](shape, { ...p, mean: p.runMean, meanLo: 0 });
      else k.normalize[dtype](shape, p);
    },
    backward(dtype, form, shape, p, activation = "none") {
      if (activation === "relu") {
        if (shape.S === 1) k.backwardConstantsRelu[dtype](form, shape, p);
        else k.backwardPlaneConstantsRelu[dtype](form, shape, p);
        k.backwardReluMap[dtype](form, shape, p);
        if (p.dx) k.backwardApplyRelu[dtype](shape, p);
        return;
      }
      if (shape.S === 1) k.backwardConstants[dtype](form, shape, p);
      else k.backwardPlaneConstants[dtype](form, shape, p);
      if (p.dx) k.backwardApply[dtype](shape, p);
    },
    checksum,
  };
  return { backend, heap, kernels };
}

/** The plain-JS backend: the reference implementation on views of a JS memory. */
function jsEngine(): Engine {
  const heap = new Heap(new JsMemory(), 16);
  const v = (dtype: Dtype, ptr: number, length: number) => (ptr ? heap.view(dtype, ptr, length) : null);
  const kernels: Kernels = {
    workBytes: () => 16,
    forwardTrain(dtype, { n, d, S }, p, f, activation = "none") {
      const size = n * d * S;
      const x = v(dtype, p.x, size)!;
      const out = v(dtype, p.out, size)!;
      const [gamma, beta, mean, meanLo, invStd] = [p.gamma, p.beta, p.mean, p.meanLo, p.invStd].map((ptr) => v(dtype, ptr, d));
      reference.forwardTrain(
        x, n, d, S, gamma, beta, f.eps, f.momentum, f.runVarScale,
        v(dtype, p.runMean, d), v(dtype, p.runVar, d), out, mean!, meanLo!, v(dtype, p.variance, d)!, invStd!,
      );
      if (activation === "relu") reference.reluForward(x, n, d, S, gamma, beta, mean!, meanLo, invStd!, out);
    },
    forwardTest(dtype, { n, d, S }, p, eps, _again, activation = "none") {
      const size = n * d * S;
      const rv = v(dtype, p.runVar, d)!;
      const x = v(dtype, p.x, size)!;
      const out = v(dtype, p.out, size)!;
      const runMean = v(dtype, p.runMean, d)!;
      reference.forwardTest(x, n, d, S, v(dtype, p.gamma, d), v(dtype, p.beta, d), eps, runMean, rv, out);
      const inv = v(dtype, p.invStd, d);
      if (inv) for (let j = 0; j < d; j++) inv[j] = 1 / Math.sqrt(rv[j] + eps);
      if (activation === "relu") reference.reluForward(x, n, d, S, v(dtype, p.gamma, d), v(dtype, p.beta, d), runMean, null, inv!, out);
    },
    backward(dtype, form, { n, d, S }, p, activation = "none") {
      const size = n * d * S;
      const x = v(dtype, p.x, size)!;
      const [gamma, mean, meanLo, invStd] = [p.gamma, p.mean, p.meanLo, p.invStd].map((ptr) => v(dtype, ptr, d));
      let dout = v(dtype, p.dout, size)!;
      if (activation === "relu") dout = reference.reluMasked(dout, x, n, d, S, gamma, v(dtype, p.beta, d), mean!, meanLo, invStd!);
      reference.backward(
        form, dout, x, n, d, S, gamma, mean!, meanLo!, invStd!,
        v(dtype, p.dx, size), v(dtype, p.dgamma, d), v(dtype, p.dbeta, d),
      );
    },
    checksum(p, words, first, state) {
      reference.checksum(new Uint32Array(heap.buffer, p, words), first, new Uint32Array(heap.buffer, state, CHECKSUM_WORDS));
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
    if (WebAssembly.validate(bytesOf("simd", "checksum"))) list.push("simd");
    if (WebAssembly.validate(bytesOf("scalar", "f32-moments"))) list.push("scalar");
  }
  list.push("js");
  return list;
}

/** The options of init() and initSync(). */
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
