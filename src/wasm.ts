// All WebAssembly plumbing: decode the embedded modules, pick a backend, instantiate once,
// and bind the kernels of the registry (src/kernels.ts). Nothing else in the package touches
// a module or its memory except through an Engine's heap.
import { type WasmPart, wasmModules } from "./generated/binaries.js";
import { type Dtype, type FloatArray } from "./dtype.js";
import { type Bound, CHECKSUM_WORDS, columnBytes, COMPACT_FORM, MAP_ARRAYS, type KernelName, type Kernels, KERNELS, SUFFIX, type TypedKernel } from "./kernels.js";
import { GROUP_LAST_STEP, type GroupKernels, type GroupShape, type KernelShape, type Pointers, TRAIN_STEP, groupRows, groupStatistics } from "./kernels.js";
import { Heap, JsMemory, MAX_PAGES } from "./memory.js";
import { Pool, threadHost, threadedGroups, threadedKernels } from "./threads.js";
import { CHANNEL_BACKWARD_BYTES, CHANNEL_RUN_BYTES } from "./tuning.js";
import * as reference from "./reference.js";
import * as referenceNorms from "./reference-norms.js";
import * as check from "./validate.js";

/** A kernel implementation: 'simd' (WebAssembly with 128-bit SIMD), 'scalar' (WebAssembly without SIMD) or 'js' (plain JavaScript). */
export type Backend = "simd" | "scalar" | "js";
export const BACKENDS: readonly Backend[] = ["simd", "scalar", "js"];

export interface Engine {
  readonly backend: Backend;
  /** The modules the engine runs: see simdBuild(). */
  readonly build: WasmBuild | "js";
  readonly heap: Heap;
  readonly kernels: Kernels;
  /** LayerNorm, GroupNorm and InstanceNorm steps. */
  readonly groups: GroupKernels;
  /** Threads the kernels run on: the caller's and the pool's workers (1 without a pool). */
  readonly threads: number;
  /** @internal The worker pool of a threaded engine. */
  readonly pool?: Pool;
}

/** The WebAssembly builds (asconfig.json); "relaxed" is the SIMD build with relaxed SIMD (fused multiply-add). */
type WasmBuild = "simd" | "scalar" | "threads" | "relaxed";

const PARTS = Object.keys(wasmModules.simd) as WasmPart[];

/**
 * One engine over the instances of every part of a build, all on one memory; with
 * `workers`, a threaded engine: the threads build on a shared memory (which needs a
 * maximum), instantiated again in each worker of a pool.
 */
function wasmEngine(backend: "simd" | "scalar", build: WasmBuild, modules: WebAssembly.Module[], workers = 0): Engine {
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
        if (p.dx && channelByChannel(dtype, shape)) {
          k.backwardChannelsRelu[dtype](form, shape, p);
          return;
        }
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
    // Synchronized batch norm (sync.ts): the f64 sums the kernels leave in the work area are
    // read out, and maps computed from global statistics written in (assembly/work.ts).
    moments(dtype, shape, p, into) {
      if (shape.S === 1) k.trainMoments[dtype](shape, p);
      else k.trainPlaneMoments[dtype](shape, p);
      const { d } = shape;
      const mean64 = workArray(p.work, d, dtype, MAP_ARRAYS);
      into.set(heap.view("float64", mean64, d), 0);
      if (dtype === "float64") into.set(heap.view("float64", mean64 + 2 * columnBytes(d, 8), d), d);
      else into.fill(0, d, 2 * d);
      into.set(heap.view("float64", mean64 + columnBytes(d, 8), d), 2 * d);
    },
    normalizeWith(dtype, shape, p, map) {
      writeMap(heap, dtype, shape.d, p.work, map);
      k.normalize[dtype](shape, p);
    },
    backwardSums(dtype, shape, p, into) {
      const q = { ...p, gamma: 0, dgamma: 0, dbeta: 0 };
      if (shape.S === 1) k.backwardConstants[dtype](COMPACT_FORM, shape, q);
      else k.backwardPlaneConstants[dtype](COMPACT_FORM, shape, q);
      const { d } = shape;
      const sums = workArray(p.work, d, dtype, MAP_ARRAYS);
      into.set(heap.view("float64", sums, d), 0);
      into.set(heap.view("float64", sums + columnBytes(d, 8), d), d);
    },
    backwardApplyWith(dtype, shape, p, map) {
      writeMap(heap, dtype, shape.d, p.work, map);
      k.backwardApply[dtype](shape, p);
    },
  };
  // LayerNorm/GroupNorm: the moments per (item, group) (groupRows), trainConstants without
  // gamma, beta or running statistics for mean, meanLo, variance, invStd, then groupApply
  // with gamma and beta per channel. Channels-last data has its own moments, apply and
  // backward (assembly/groupnorm.ts).
  const groups: GroupKernels = {
    workBytes: (dtype, s) =>
      s.channelsLast
        ? k.workBytes[dtype](groupRows(s), TRAIN_STEP) + k.workBytes[dtype]({ n: s.S, d: s.G * s.K, S: 1 }, GROUP_LAST_STEP)
        : Math.max(k.workBytes[dtype](groupRows(s), TRAIN_STEP), 32 * s.G * s.K + 64),
    forward(dtype, s, p, eps) {
      const rows = groupRows(s);
      const q = groupStatistics(p);
      if (s.channelsLast) k.groupMomentsChannelsLast[dtype](s, p);
      else k.trainPlaneMoments[dtype](rows, q);
      k.trainConstants[dtype](rows, q, { eps, momentum: 1, runVarScale: 1 });
      (s.channelsLast ? k.groupApplyChannelsLast : k.groupApply)[dtype](s, p);
    },
    backward: (dtype, s, p) => (s.channelsLast ? k.groupBackwardChannelsLast : k.groupBackward)[dtype](s, p),
  };
  if (workers === 0) return { backend, build, heap, kernels, groups, threads: 1 };
  const names = Object.keys(exports).filter((name) => typeof exports[name] === "function");
  const pool = new Pool(threadHost()!, modules, memory, names, (fn, args) => void exports[names[fn]](...args), workers);
  return {
    backend, build, heap, pool, kernels: threadedKernels(kernels, pool, () => heap.buffer), groups: threadedGroups(groups, pool, () => heap.buffer),
    get threads() {
      return pool.size;
    },
  };
}

/** The batch norm's view of a group step's statistics: no gamma, beta or running statistics. */
/** Array k of the per-column arrays of the dtype at the start of a work area (columnArray). */
function workArray(work: number, d: number, dtype: Dtype, k: number): number {
  return work + k * columnBytes(d, dtype === "float64" ? 8 : 4);
}
/** A map of 3·d f64 values into the work area's first three arrays, rounded to the dtype. */
function writeMap(heap: Heap, dtype: Dtype, d: number, work: number, map: Float64Array): void {
  for (let k = 0; k < MAP_ARRAYS; k++) heap.view(dtype, workArray(work, d, dtype, k), d).set(map.subarray(k * d, (k + 1) * d));
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
    moments(dtype, { n, d, S }, p, into) {
      const size = n * d * S;
      // The reference's forward, for its statistics only (eps 0: its out is thrown away).
      reference.forwardTrain(
        v(dtype, p.x, size)!, n, d, S, null, null, 0, 1, 1, null, null, new Float64Array(size),
        into.subarray(0, d), into.subarray(d, 2 * d), into.subarray(2 * d, 3 * d), new Float64Array(d),
      );
    },
    normalizeWith(dtype, { n, d, S }, p, map) {
      const size = n * d * S;
      reference.affine(v(dtype, p.x, size)!, n, d, S, map.subarray(0, d), map.subarray(d, 2 * d), map.subarray(2 * d), v(dtype, p.out, size)!);
    },
    backwardSums(dtype, { n, d, S }, p, into) {
      const size = n * d * S;
      // invStd 1: the reference's dgamma is then Σdout·(x − mean) itself.
      reference.backward(
        COMPACT_FORM, v(dtype, p.dout, size)!, v(dtype, p.x, size)!, n, d, S, null, v(dtype, p.mean, d)!,
        new Float64Array(d), new Float64Array(d).fill(1), null, into.subarray(d, 2 * d), into.subarray(0, d),
      );
    },
    backwardApplyWith(dtype, { n, d, S }, p, map) {
      const size = n * d * S;
      reference.applyBackwardMap(
        v(dtype, p.dout, size)!, v(dtype, p.x, size)!, n, d, S, v(dtype, p.mean, d)!,
        map.subarray(0, d), map.subarray(d, 2 * d), map.subarray(2 * d), v(dtype, p.dx, size)!,
      );
    },
  };
  // The reference reads (n, G, K, S): channels-last data is transposed to it and back.
  const groups: GroupKernels = {
    workBytes: () => 16,
    forward(dtype, s, p, eps) {
      const { n, G, K, S } = s;
      const size = n * G * K * S;
      const C = G * K;
      const R = n * G;
      const x = channelsFirst(s, v(dtype, p.x, size)!);
      const out = s.channelsLast ? x.slice() : v(dtype, p.out, size)!;
      referenceNorms.groupForward(
        x, n, G, K, S, v(dtype, p.gamma, C)!, v(dtype, p.beta, C)!, eps, out,
        v(dtype, p.mean, R)!, v(dtype, p.meanLo, R)!, v(dtype, p.variance, R)!, v(dtype, p.invStd, R)!,
      );
      if (s.channelsLast) toChannelsLast(s, out, v(dtype, p.out, size)!);
    },
    backward(dtype, s, p) {
      const { n, G, K, S } = s;
      const size = n * G * K * S;
      const C = G * K;
      const R = n * G;
      const given = v(dtype, p.dx, size);
      const dx = s.channelsLast && given ? given.slice() : given;
      referenceNorms.groupBackward(
        channelsFirst(s, v(dtype, p.dout, size)!), channelsFirst(s, v(dtype, p.x, size)!), n, G, K, S, v(dtype, p.mean, R)!, v(dtype, p.meanLo, R)!,
        v(dtype, p.invStd, R)!, v(dtype, p.gamma, C)!, dx, v(dtype, p.dgamma, C), v(dtype, p.dbeta, C),
      );
      if (s.channelsLast && dx) toChannelsLast(s, dx, given!);
    },
  };
  return { backend: "js", build: "js", heap, kernels, groups, threads: 1 };
}

/** Channels-last (n, S, C) data as a channels-first (n, C, S) copy; channels-first data as it is. */
function channelsFirst<A extends FloatArray>(s: GroupShape, src: A): A {
  if (!s.channelsLast) return src;
  const C = s.G * s.K;
  const dst = src.slice() as A;
  for (let i = 0; i < s.n; i++) {
    const o = i * C * s.S;
    for (let j = 0; j < s.S; j++) for (let c = 0; c < C; c++) dst[o + c * s.S + j] = src[o + j * C + c];
  }
  return dst;
}

/** dst (n, S, C) from channels-first src (n, C, S). */
function toChannelsLast(s: GroupShape, src: FloatArray, dst: FloatArray): void {
  const C = s.G * s.K;
  for (let i = 0; i < s.n; i++) {
    const o = i * C * s.S;
    for (let c = 0; c < C; c++) for (let j = 0; j < s.S; j++) dst[o + j * C + c] = src[o + c * s.S + j];
  }
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
  // The relaxed build ships only the parts that differ from the SIMD build (scripts/build-wasm.mjs).
  const text = build === "relaxed" ? (wasmModules.relaxed[part] ?? wasmModules.simd[part]) : wasmModules[build][part];
  if (!bytes) decoded.set(key, (bytes = decodeBase64(text)));
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

/**
 * The smallest module with a relaxed-SIMD instruction (f32x4.relaxed_madd of three splats):
 * WebAssembly.validate accepts it where the engine has relaxed SIMD (Chrome 114+, Firefox 146+,
 * Node 22+).
 */
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 28, 1, 26, 0,
  67, 0, 0, 0, 0, 253, 19, 67, 0, 0, 0, 0, 253, 19, 67, 0, 0, 0, 0, 253, 19, 253, 133, 2, 11,
]);

/** Whether this JavaScript engine runs relaxed SIMD, so that the 'simd' backend can use the relaxed build. */
function relaxedSupported(): boolean {
  return Object.keys(wasmModules.relaxed).length > 0 && WebAssembly.validate(RELAXED_PROBE);
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
  /**
   * Whether the 'simd' backend may run the relaxed-SIMD build (default true): where the engine
   * has relaxed SIMD, the kernels that gained from it use fused multiply-add, whose rounding
   * depends on the hardware. false: the plain SIMD build, the same bits on every machine.
   * Threads (threads > 1) always run the plain SIMD build. See simdBuild().
   */
  relaxed?: boolean;
}

const engines = new Map<string, Engine>();
let active: Engine | null = null;

function chooseBackend(options: InitOptions | undefined): Backend {
  if (options !== undefined && (options === null || typeof options !== "object")) {
    throw new TypeError("init: options must be an object like { backend: 'simd' | 'scalar' | 'js' }");
  }
  if (options !== undefined) check.knownKeys("init options", options, ["backend", "threads", "relaxed"]);
  if (options?.relaxed !== undefined && typeof options.relaxed !== "boolean") {
    throw new TypeError(`init: relaxed must be true or false, got ${check.shown(options.relaxed)}`);
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

/** The build an engine of `backend` with `threads` runs: relaxed where allowed and supported. */
function buildFor(backend: Backend, threads: number, options: InitOptions | undefined): WasmBuild | "js" {
  if (backend === "js") return "js";
  if (threads > 1) return "threads";
  return backend === "simd" && options?.relaxed !== false && relaxedSupported() ? "relaxed" : backend;
}

const keyOf = (build: WasmBuild | "js", threads: number) => (threads === 1 ? build : `${build}/${threads}`);

function newEngine(backend: Backend, build: WasmBuild | "js", threads: number, modules?: WebAssembly.Module[]): Engine {
  if (backend === "js" || build === "js") return jsEngine();
  return wasmEngine(backend, build, modules ?? PARTS.map((part) => new WebAssembly.Module(bytesOf(build, part))), threads - 1);
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
  const build = buildFor(backend, threads, options);
  const key = keyOf(build, threads);
  let engine = usableEngine(key, threads);
  if (!engine) {
    if (threads > 1 && !threadHost()!.canWait) {
      throw new Error("initSync: threads cannot start on a browser's main thread, which may not wait for them: use await init({ threads })");
    }
    engine = newEngine(backend, build, threads);
    engine.pool?.waitReady();
    engines.set(key, engine);
  }
  active = engine;
  return backend;
}

/**
 * The engine made for `key`, unless its pool lost workers (a fault, docs/threads.md): then
 * init makes a new one with a full pool (layers created before keep the old one).
 */
function usableEngine(key: string, threads: number): Engine | undefined {
  const engine = engines.get(key);
  return engine && !(engine.pool && engine.pool.lost > 0 && engine.threads < threads) ? engine : undefined;
}

/** As initSync, compiling the module asynchronously (for browsers' main threads) and waiting for workers without blocking. */
export async function init(options?: InitOptions): Promise<Backend> {
  const backend = chooseBackend(options);
  const threads = threadsFor(backend, threadsWanted(options));
  const build = buildFor(backend, threads, options);
  const key = keyOf(build, threads);
  if (!usableEngine(key, threads) && build !== "js") {
    const modules = await Promise.all(PARTS.map((part) => WebAssembly.compile(bytesOf(build, part))));
    if (!usableEngine(key, threads)) {
      const engine = newEngine(backend, build, threads, modules);
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

/** Whether the fused ReLU's backward of channels-first data goes channel by channel (see CHANNEL_BACKWARD_BYTES). */
export function channelByChannel(dtype: Dtype, shape: KernelShape): boolean {
  const run = shape.S * (dtype === "float64" ? 8 : 4);
  return shape.S > 1 && run >= CHANNEL_RUN_BYTES && 2 * shape.n * run <= CHANNEL_BACKWARD_BYTES;
}

/**
 * The SIMD build the active engine runs: 'relaxed' (relaxed SIMD: fused multiply-add in the
 * kernels that gained from it, rounding that depends on the hardware), 'simd' (plain SIMD, also
 * the threads build), or null for the 'scalar' and 'js' backends. Initializes the best backend
 * on first use. init({ relaxed: false }) keeps the plain SIMD build.
 */
export function simdBuild(): "relaxed" | "simd" | null {
  const { build } = engine();
  return build === "relaxed" ? "relaxed" : build === "simd" || build === "threads" ? "simd" : null;
}
