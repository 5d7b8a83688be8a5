// All WebAssembly plumbing: decode the embedded modules, pick a backend, instantiate once,
// and bind the kernels of the registry (src/kernels.ts). Nothing else in the package touches
// a module or its memory except through an Engine's heap.
import { type WasmPart, wasmModules } from "./generated/binaries.js";
import { type Dtype } from "./dtype.js";
import { type Bound, CHECKSUM_WORDS, type KernelName, type Kernels, KERNELS, SUFFIX, type TypedKernel } from "./kernels.js";
import { Heap, JsMemory, MAX_PAGES } from "./memory.js";
import { Pool, threadHost, threadedKernels } from "./threads.js";
import * as reference from "./reference.js";
import * as check from "./validate.js";

/** A kernel implementation: 'simd' (WebAssembly with 128-bit SIMD), 'scalar' (WebAssembly without SIMD) or 'js' (plain JavaScript). */
export type Backend = "simd" | "scalar" | "js";
export const BACKENDS: readonly Backend[] = ["simd", "scalar", "js"];

export interface Engine {
  readonly backend: Backend;
  readonly heap: Heap;
  readonly kernels: Kernels;
  /** Threads the kernels run on: the caller's and the pool's workers (1 without a pool). */
  readonly threads: number;
  /** @internal The worker pool of a threaded engine. */
  readonly pool?: Pool;
}

type WasmBuild = "simd" | "scalar" | "threads";

const PARTS = Object.keys(wasmModules.simd) as WasmPart[];

/**
 * One engine over the instances of every part of a build, all on one memory; with
 * `workers`, a threaded engine: the threads build on a shared memory (which needs a
 * maximum), instantiated again in each worker of a pool.
 */
function wasmEngine(backend: "simd" | "scalar", modules: WebAssembly.Module[], workers = 0): Engine {
  const memory = workers > 0 ? new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true }) : new WebAssembly.Memory({ initial: 1 });
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
    forwardTrain(dtype, shape, p, f) {
      if (shape.S === 1) k.trainMoments[dtype](shape, p);
      else k.trainPlaneMoments[dtype](shape, p);
      k.trainConstants[dtype](shape, p, f);
      k.normalize[dtype](shape, p);
    },
    forwardTest(dtype, shape, p, eps, again) {
      if (!again) k.testConstants[dtype](shape, p, eps);
      k.normalize[dtype](shape, p);
    },
    backward(dtype, form, shape, p) {
      if (shape.S === 1) k.backwardConstants[dtype](form, shape, p);
      else k.backwardPlaneConstants[dtype](form, shape, p);
      if (p.dx) k.backwardApply[dtype](shape, p);
    },
    checksum,
  };
  if (workers === 0) return { backend, heap, kernels, threads: 1 };
  const names = Object.keys(exports).filter((name) => typeof exports[name] === "function");
  const pool = new Pool(threadHost()!, modules, memory, names, (fn, args) => void exports[names[fn]](...args), workers);
  return {
    backend, heap, pool, kernels: threadedKernels(kernels, pool, () => heap.buffer),
    get threads() {
      return pool.size;
    },
  };
}

/** The plain-JS backend: the reference implementation on views of a JS memory. */
function jsEngine(): Engine {
  const heap = new Heap(new JsMemory(), 16);
  const v = (dtype: Dtype, ptr: number, length: number) => (ptr ? heap.view(dtype, ptr, length) : null);
  const kernels: Kernels = {
    workBytes: () => 16,
    forwardTrain(dtype, { n, d, S }, p, f) {
      const size = n * d * S;
      reference.forwardTrain(
        v(dtype, p.x, size)!, n, d, S, v(dtype, p.gamma, d), v(dtype, p.beta, d), f.eps, f.momentum, f.runVarScale,
        v(dtype, p.runMean, d), v(dtype, p.runVar, d), v(dtype, p.out, size)!,
        v(dtype, p.mean, d)!, v(dtype, p.meanLo, d)!, v(dtype, p.variance, d)!, v(dtype, p.invStd, d)!,
      );
    },
    forwardTest(dtype, { n, d, S }, p, eps) {
      const size = n * d * S;
      const rv = v(dtype, p.runVar, d)!;
      reference.forwardTest(
        v(dtype, p.x, size)!, n, d, S, v(dtype, p.gamma, d), v(dtype, p.beta, d), eps, v(dtype, p.runMean, d)!, rv, v(dtype, p.out, size)!,
      );
      const inv = v(dtype, p.invStd, d);
      if (inv) for (let j = 0; j < d; j++) inv[j] = 1 / Math.sqrt(rv[j] + eps);
    },
    backward(dtype, form, { n, d, S }, p) {
      const size = n * d * S;
      reference.backward(
        form, v(dtype, p.dout, size)!, v(dtype, p.x, size)!, n, d, S, v(dtype, p.gamma, d),
        v(dtype, p.mean, d)!, v(dtype, p.meanLo, d)!, v(dtype, p.invStd, d)!,
        v(dtype, p.dx, size), v(dtype, p.dgamma, d), v(dtype, p.dbeta, d),
      );
    },
    checksum(p, words, first, state) {
      reference.checksum(new Uint32Array(heap.buffer, p, words), first, new Uint32Array(heap.buffer, state, CHECKSUM_WORDS));
    },
  };
  return { backend: "js", heap, kernels, threads: 1 };
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
  /**
   * Threads for layers, workspaces and functional calls created afterwards, the caller's
   * among them (default 1). More than 1 needs the 'simd' backend, shared memory, atomics and
   * workers (in browsers a crossOriginIsolated page); elsewhere it is 1: see threads().
   */
  threads?: number;
}

const engines = new Map<string, Engine>();
let active: Engine | null = null;

function chooseBackend(options: InitOptions | undefined): Backend {
  if (options !== undefined && (options === null || typeof options !== "object")) {
    throw new TypeError("init: options must be an object like { backend: 'simd' | 'scalar' | 'js' }");
  }
  if (options !== undefined) check.knownKeys("init options", options, ["backend", "threads"]);
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

/** The thread count asked for, checked: a whole number from 1 to 256 (default 1). */
function threadsWanted(options: InitOptions | undefined): number {
  const n = options?.threads ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new RangeError(`init: threads must be a whole number from 1 to 256, got ${check.shown(n)}`);
  return n;
}

/** Threads a pool can have here for `backend` (1 where shared memory, atomics or workers are missing). */
function threadsFor(backend: Backend, wanted: number): number {
  if (wanted === 1 || backend !== "simd" || !threadHost()) return 1;
  return WebAssembly.validate(bytesOf("threads", "checksum")) ? wanted : 1;
}

const keyOf = (backend: Backend, threads: number) => (threads === 1 ? backend : `${backend}/${threads}`);

function newEngine(backend: Backend, threads: number, modules?: WebAssembly.Module[]): Engine {
  if (backend === "js") return jsEngine();
  const build: WasmBuild = threads > 1 ? "threads" : backend;
  return wasmEngine(build === "threads" ? "simd" : build, modules ?? PARTS.map((part) => new WebAssembly.Module(bytesOf(build, part))), threads - 1);
}

/**
 * Makes `backend` (and `threads`) the active one for the functional API and new layers.
 * Idempotent: each backend and thread count is instantiated once. Layers keep the engine
 * they were created with. With threads in Node it blocks until the workers have started; on
 * a browser's main thread threads need init() (workers start only when it yields).
 */
export function initSync(options?: InitOptions): Backend {
  const backend = chooseBackend(options);
  const threads = threadsFor(backend, threadsWanted(options));
  const key = keyOf(backend, threads);
  let engine = engines.get(key);
  if (!engine) {
    if (threads > 1 && !threadHost()!.canWait) {
      throw new Error("initSync: threads cannot start on a browser's main thread, which may not wait for them: use await init({ threads })");
    }
    engine = newEngine(backend, threads);
    engine.pool?.waitReady();
    engines.set(key, engine);
  }
  active = engine;
  return backend;
}

/** As initSync, compiling the module asynchronously (for browsers' main threads) and waiting for workers without blocking. */
export async function init(options?: InitOptions): Promise<Backend> {
  const backend = chooseBackend(options);
  const threads = threadsFor(backend, threadsWanted(options));
  const key = keyOf(backend, threads);
  if (!engines.has(key) && backend !== "js") {
    const build: WasmBuild = threads > 1 ? "threads" : (backend as WasmBuild);
    const modules = await Promise.all(PARTS.map((part) => WebAssembly.compile(bytesOf(build, part))));
    if (!engines.has(key)) {
      const engine = newEngine(backend, threads, modules);
      await engine.pool?.ready();
      engines.set(key, engine);
    }
  }
  return initSync(options);
}

/** Threads the active engine runs batch norm on: the caller's thread and its workers (1 without threads). */
export function threads(): number {
  return engine().threads;
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
