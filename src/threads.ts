// Threads on one shared WebAssembly.Memory: a pool of workers that run kernel exports on
// their share of a batch, and the kernels of a threaded engine that split batch norm's
// steps between the caller's thread and the pool (docs/threads.md).
//
// Determinism: a batch is cut into parts that depend only on its shape and the thread
// count, each part's column sums land in that thread's own work area, and the caller merges
// them in thread order. Which thread finishes first changes nothing.
//
// Synchronisation: one small SharedArrayBuffer per worker (not the engine's memory, which
// grows): the caller writes a job and bumps SEQ, the worker runs it and stores DONE = SEQ.
// Both spin briefly (a wake-up by Atomics.notify costs tens of µs) and then Atomics.wait;
// a browser's main thread may not wait, so there the caller only spins.
import { type Dtype, bytesPerElement } from "./dtype.js";
import { columnBytes, type KernelShape, KERNELS, MAP_ARRAYS, type Kernels, type KernelName, type Pointers, SUFFIX, TEST_STEP, TRAIN_STEP, BACKWARD_STEP } from "./kernels.js";
import { type GroupKernels, type GroupPointers, type GroupShape, groupRows, groupStatistics } from "./kernels.js";
import { THREAD_MIN_BYTES, THREAD_ROWS_MULTIPLE } from "./tuning.js";

/** Control words (Int32) of a worker's control block. */
const SEQ = 0, DONE = 1, STATUS = 2, FN = 3, ARGC = 4, READY = 5, MESSAGE_BYTES = 6, FAULT = 7, GONE = 8;
/** Test-only faults a worker plays on its next job (FAULT word): throw, or end its thread without answering. */
const FAULT_THROW = 1, FAULT_EXIT = 2;
const ARGS_AT = 64;
const MAX_ARGS = 16;
const MESSAGE_AT = ARGS_AT + 8 * MAX_ARGS;
const MESSAGE_MAX = 1024;
const CONTROL_BYTES = MESSAGE_AT + MESSAGE_MAX;
/** Atomics.load polls before a thread sleeps in Atomics.wait (a few µs). */
const SPINS = 4000;

// The worker: instantiates the modules on the shared memory, then runs jobs until SEQ < 0.
// Plain JavaScript in a string, so that a bundled app needs no worker file.
const WORKER_SOURCE = `
"use strict";
function start(data) {
  var ctl = new Int32Array(data.control, 0, 16);
  var args = new Float64Array(data.control, ${ARGS_AT}, ${MAX_ARGS});
  var message = new Uint8Array(data.control, ${MESSAGE_AT}, ${MESSAGE_MAX});
  function fail(e) {
    var bytes = new TextEncoder().encode(String(e && e.stack || e)).slice(0, ${MESSAGE_MAX});
    message.set(bytes);
    ctl[${MESSAGE_BYTES}] = bytes.length;
  }
  // A thread that ends (process.exit, an uncaught error) says so, for a caller waiting on it.
  if (typeof process === "object" && process && typeof process.on === "function") {
    process.on("exit", function () { Atomics.store(ctl, ${GONE}, 1); Atomics.notify(ctl, ${DONE}); });
  }
  var fns;
  try {
    var exports = {};
    data.modules.forEach(function (m) { Object.assign(exports, new WebAssembly.Instance(m, { env: { memory: data.memory } }).exports); });
    fns = data.names.map(function (n) { return exports[n]; });
    Atomics.store(ctl, ${READY}, 1);
  } catch (e) {
    fail(e);
    Atomics.store(ctl, ${READY}, -1);
  }
  Atomics.notify(ctl, ${READY});
  if (!fns) return;
  var seen = 0;
  for (;;) {
    for (var spin = 0; Atomics.load(ctl, ${SEQ}) === seen; spin++) if (spin > ${SPINS}) Atomics.wait(ctl, ${SEQ}, seen);
    seen = Atomics.load(ctl, ${SEQ});
    if (seen < 0) return;
    try {
      var a = Array.prototype.slice.call(args, 0, ctl[${ARGC}]);
      var fault = Atomics.exchange(ctl, ${FAULT}, 0);
      if (fault === ${FAULT_EXIT}) { if (typeof process === "object") process.exit(3); else self.close(); return; }
      if (fault === ${FAULT_THROW}) throw new Error("fault injected by a test");
      fns[ctl[${FN}]].apply(null, a);
      ctl[${STATUS}] = 0;
    } catch (e) {
      fail(e);
      ctl[${STATUS}] = 1;
    }
    Atomics.store(ctl, ${DONE}, seen);
    Atomics.notify(ctl, ${DONE});
  }
}
if (typeof require === "function") start(require("node:worker_threads").workerData);
else self.onmessage = function (e) { start(e.data); };
`;

/** What thread pools need of the JavaScript engine; null where threads cannot run. */
interface Host {
  spawn(data: WorkerData): WorkerHandle;
  /** Whether this thread may block in Atomics.wait (not a browser's main thread). */
  canWait: boolean;
}

interface WorkerData {
  modules: WebAssembly.Module[];
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  names: string[];
}

interface WorkerHandle {
  terminate(): void;
  onExit(listener: (why: string) => void): void;
}

interface NodeWorker {
  unref(): void;
  terminate(): Promise<number>;
  on(event: string, listener: (value: unknown) => void): void;
}

function nodeHost(): Host | null {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown; versions?: { node?: string } } }).process;
  const load = proc?.versions?.node ? proc.getBuiltinModule : undefined;
  if (typeof load !== "function") return null;
  const { Worker } = load("node:worker_threads") as { Worker: new (src: string, options: object) => NodeWorker };
  return {
    canWait: true,
    spawn(data) {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: data });
      // A Node process exits when its work is done, whatever the pool's workers wait for.
      worker.unref();
      return {
        terminate: () => void worker.terminate(),
        onExit(listener) {
          worker.on("error", (e) => listener(`it threw ${String(e)}`));
          worker.on("exit", (code) => listener(`it exited (code ${String(code)})`));
        },
      };
    },
  };
}

function browserHost(): Host | null {
  const g = globalThis as { crossOriginIsolated?: boolean; Worker?: new (url: string) => Worker; Blob?: typeof Blob; URL?: typeof URL };
  if (g.crossOriginIsolated !== true || typeof g.Worker !== "function" || !g.Blob || !g.URL) return null;
  const url = g.URL.createObjectURL(new g.Blob([WORKER_SOURCE], { type: "text/javascript" }));
  let canWait = true;
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
  } catch {
    canWait = false;
  }
  return {
    canWait,
    spawn(data) {
      const worker = new g.Worker!(url);
      worker.postMessage(data);
      return {
        terminate: () => worker.terminate(),
        onExit(listener) {
          worker.onerror = (e) => listener(`it threw ${e.message}`);
        },
      };
    },
  };
}

/** Where threads can run: shared memory, atomics and workers (in browsers only when crossOriginIsolated). */
export function threadHost(): Host | null {
  if (typeof SharedArrayBuffer !== "function" || typeof Atomics !== "object") return null;
  try {
    return nodeHost() ?? browserHost();
  } catch {
    return null;
  }
}

/** What a pool throws for a worker that failed; the pool goes on without it. */
export class ThreadError extends Error {
  /** "ThreadError", to tell it from other errors without instanceof. */
  override name = "ThreadError";
}

interface Member {
  handle: WorkerHandle;
  ctl: Int32Array;
  args: Float64Array;
  message: Uint8Array;
  /** Why it left the pool, once it has. */
  gone: string | null;
}

/** One job: an export (its index in the pool's names) and its arguments. */
export type Job = [fn: number, args: number[]];

/**
 * Workers with instances of the modules on one shared memory. run() hands jobs 1… to the
 * workers and runs job 0 on the caller's thread, returning when all are done.
 */
export class Pool {
  private members: Member[] = [];
  /** Batches smaller than this (bytes of x) run on the caller alone; the benchmarks vary it to measure. */
  minBytes = THREAD_MIN_BYTES;
  /** Calls that ran on more than one thread (for tests and the benchmarks). */
  forks = 0;
  /** ms a caller waits for a worker before it gives the worker up; tests lower it. */
  waitLimitMs = 10_000;

  constructor(
    private readonly host: Host,
    modules: WebAssembly.Module[],
    memory: WebAssembly.Memory,
    readonly names: string[],
    private readonly call: (fn: number, args: number[]) => void,
    workers: number,
  ) {
    for (let i = 0; i < workers; i++) {
      const control = new SharedArrayBuffer(CONTROL_BYTES);
      const handle = host.spawn({ modules, memory, control, names });
      const member: Member = {
        handle, ctl: new Int32Array(control, 0, 16), args: new Float64Array(control, ARGS_AT, MAX_ARGS),
        message: new Uint8Array(control, MESSAGE_AT, MESSAGE_MAX), gone: null,
      };
      handle.onExit((why) => this.drop(member, why));
      this.members.push(member);
    }
  }

  /** Threads in use: the caller's and every worker still in the pool. */
  get size(): number {
    return 1 + this.members.length;
  }

  /** Waits (blocking; Node, or a browser worker) until every worker is ready or has failed. */
  waitReady(limitMs = 30_000): void {
    const end = Date.now() + limitMs;
    for (const m of this.members) {
      while (Atomics.load(m.ctl, READY) === 0 && Date.now() < end) Atomics.wait(m.ctl, READY, 0, 50);
    }
    this.settleReady();
  }

  /** As waitReady, without blocking the thread (a browser's main thread). */
  async ready(limitMs = 30_000): Promise<void> {
    const end = Date.now() + limitMs;
    while (this.members.some((m) => Atomics.load(m.ctl, READY) === 0) && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    this.settleReady();
  }

  private settleReady(): void {
    for (const m of [...this.members]) {
      const ready = Atomics.load(m.ctl, READY);
      if (ready !== 1) this.drop(m, ready < 0 ? `it could not instantiate the modules: ${this.messageOf(m)}` : "it did not start in time", false, false);
    }
  }

  /**
   * Runs jobs[0] here and jobs[k] on worker k − 1 (here too if there is none). A worker that threw,
   * or whose thread ended, leaves the pool and its job is run again here (same part, same
   * work area: the results of a healthy call). A worker that does not answer within
   * waitLimitMs may still be running: it is terminated and the call throws a ThreadError.
   */
  run(jobs: Job[]): void {
    const posted: [Member, Job][] = [];
    // A step cuts its parts once and runs several times: a worker lost in an earlier run
    // leaves its later jobs without a worker, and the caller runs them.
    const again: Job[] = [];
    if (jobs.length > 1) this.forks++;
    for (let k = 1; k < jobs.length; k++) {
      const m = this.members[k - 1];
      if (!m) {
        again.push(jobs[k]);
        continue;
      }
      const [fn, args] = jobs[k];
      m.args.set(args);
      m.ctl[FN] = fn;
      m.ctl[ARGC] = args.length;
      const seq = (m.ctl[SEQ] + 1) & 0x3fffffff;
      Atomics.store(m.ctl, SEQ, seq);
      Atomics.notify(m.ctl, SEQ);
      posted.push([m, jobs[k]]);
    }
    let own: unknown = null;
    try {
      this.call(jobs[0][0], jobs[0][1]);
    } catch (e) {
      own = e;
    }
    // Every posted job is waited for before anything throws: its worker writes memory.
    const stalled: string[] = [];
    const orphans = again.length;
    for (const [m, job] of posted) {
      const seq = m.ctl[SEQ];
      if (this.waitDone(m, seq)) {
        if (m.ctl[STATUS] === 0) continue;
        this.drop(m, `it threw: ${this.messageOf(m)}`, true);
        again.push(job);
      } else if (Atomics.load(m.ctl, GONE) !== 0) {
        // Its thread ran its exit handlers: it writes nothing any more.
        this.drop(m, "its thread ended", true);
        again.push(job);
      } else {
        stalled.push(m.gone ?? `it did not finish its part within ${this.waitLimitMs} ms (terminated or stalled)`);
        this.drop(m, "it did not finish a job in time", true);
      }
    }
    if (own !== null) throw own;
    if (stalled.length) {
      throw new ThreadError(`batchnorm-wasm: a worker failed (${stalled.join("; ")}). The call was not completed; the package goes on with ${this.size} thread(s)`);
    }
    for (const [fn, args] of again) this.call(fn, args);
    this.recovered += again.length - orphans;
  }

  /** Workers lost to faults after the pool started (not those that never started, nor a close). */
  lost = 0;

  /** Jobs run again on the caller's thread after their worker failed (for tests). */
  recovered = 0;

  /** Why each worker that left the pool left it, in order (for tests and messages). */
  readonly departures: string[] = [];

  private waitDone(m: Member, seq: number): boolean {
    for (let spin = 0; spin < SPINS; spin++) if (Atomics.load(m.ctl, DONE) === seq) return true;
    const end = performance.now() + this.waitLimitMs;
    while (Atomics.load(m.ctl, DONE) !== seq) {
      if (m.gone !== null || Atomics.load(m.ctl, GONE) !== 0 || performance.now() > end) return false;
      if (this.host.canWait) Atomics.wait(m.ctl, DONE, Atomics.load(m.ctl, DONE), 20);
    }
    return true;
  }

  private messageOf(m: Member): string {
    return new TextDecoder().decode(m.message.slice(0, m.ctl[MESSAGE_BYTES])).split("\n")[0];
  }

  /** Takes a worker out of the pool (for good: its thread may still be writing). */
  private drop(m: Member, why: string, terminate = false, fault = true): void {
    if (m.gone !== null) return;
    m.gone = why;
    this.departures.push(why);
    if (fault) this.lost++;
    this.members = this.members.filter((x) => x !== m);
    if (terminate) m.handle.terminate();
  }

  /** Stops every worker. */
  close(): void {
    for (const m of [...this.members]) {
      Atomics.store(m.ctl, SEQ, -1);
      Atomics.notify(m.ctl, SEQ);
      this.drop(m, "the pool was closed", false, false);
    }
  }

  /**
   * @internal For tests: worker k (0-based, among those still in the pool) fails: "throw" on
   * its next job, "exit" ends its own thread on its next job without answering, "terminate"
   * is Worker.terminate() now, from outside, as a crash would.
   */
  injectFault(k: number, kind: "throw" | "exit" | "terminate"): void {
    const m = this.members[k];
    if (kind === "terminate") m.handle.terminate();
    else Atomics.store(m.ctl, FAULT, kind === "throw" ? FAULT_THROW : FAULT_EXIT);
  }
}

/** A part of a batch: items (rows, or channels-first items) [first, first + n). */
interface Part {
  first: number;
  n: number;
}

/**
 * The parts of n items for `threads` threads: equal shares, rows in multiples of
 * THREAD_ROWS_MULTIPLE (each part starts on a whole SIMD group and cache line), never empty.
 */
export function partsOf(n: number, S: number, threads: number): Part[] {
  const multiple = S === 1 ? THREAD_ROWS_MULTIPLE : 1;
  const share = Math.ceil(Math.ceil(n / threads) / multiple) * multiple;
  const parts: Part[] = [];
  for (let first = 0; first < n; first += share) parts.push({ first, n: Math.min(share, n - first) });
  return parts;
}

type Bound = (...args: never[]) => void;

/** The exports a threaded engine calls, by kernel and dtype: a function for the caller and its index for workers. */
export interface ThreadedExports {
  names: string[];
  call(fn: number, args: number[]): void;
}

/** The positional arguments a registry binding passes to its export. */
function argsOf<K extends KernelName>(name: K, ...record: Parameters<ReturnType<(typeof KERNELS)[K]["bind"]>>): number[] {
  let args: number[] = [];
  (KERNELS[name].bind((...a: number[]) => {
    args = a;
    return 0;
  }) as unknown as Bound)(...(record as unknown as never[]));
  return args;
}

/** Bytes from one thread's work area to the next: cache lines apart. */
function stride(bytes: number): number {
  return Math.ceil(bytes / 64) * 64;
}

/** Bytes of one per-column array of T in a work area (columnArray in assembly/work.ts). */
const f64Bytes = (d: number) => columnBytes(d, 8);

/**
 * The kernels of an engine with a pool: batch norm's steps split by rows (by items of
 * channels-first data) when the batch has THREAD_MIN_BYTES or more, else the caller's
 * `single` kernels. Thread k works in its own work area, k strides past p.work.
 */
export function threadedKernels(single: Kernels, pool: Pool, buffer: () => ArrayBuffer): Kernels {
  const index = new Map(pool.names.map((name, i) => [name, i]));
  const fn = (kernel: KernelName, dtype: Dtype) => index.get(kernel + SUFFIX[dtype])!;
  const oneWork = (dtype: Dtype, shape: KernelShape, step: number) => stride(single.workBytes(dtype, shape, step as 0));
  const partsFor = (dtype: Dtype, shape: KernelShape): Part[] | null => {
    const { n, d, S } = shape;
    if (pool.size < 2 || n * d * S * bytesPerElement(dtype) < pool.minBytes) return null;
    const parts = partsOf(n, S, pool.size);
    return parts.length > 1 ? parts : null;
  };
  const view = (ptr: number, part: Part, shape: KernelShape, size: number) => (ptr ? ptr + part.first * shape.d * shape.S * size : 0);
  /** The map (centre, scale, bias or a, m, b) of thread 0's work area, copied to the others'. */
  const shareMap = (dtype: Dtype, shape: KernelShape, work: number, W: number, threads: number) => {
    const bytes = new Uint8Array(buffer());
    const length = MAP_ARRAYS * columnBytes(shape.d, bytesPerElement(dtype));
    for (let k = 1; k < threads; k++) bytes.copyWithin(work + k * W, work, work + length);
  };
  const normalizeJobs = (dtype: Dtype, shape: KernelShape, p: Pointers, parts: Part[], W: number): Job[] => {
    const size = bytesPerElement(dtype);
    return parts.map((part, k) => [fn("normalize", dtype), argsOf("normalize", { ...shape, n: part.n }, {
      ...p, x: view(p.x, part, shape, size), out: view(p.out, part, shape, size), work: p.work + k * W,
    })]);
  };
  return {
    workBytes: (dtype, shape, step) => pool.size * oneWork(dtype, shape, step),
    // The fused activation and synchronized batch norm's steps run on the caller's thread.
    moments: single.moments,
    normalizeWith: single.normalizeWith,
    backwardSums: single.backwardSums,
    backwardApplyWith: single.backwardApplyWith,
    forwardTrain(dtype, shape, p, f, activation = "none") {
      const parts = activation === "none" ? partsFor(dtype, shape) : null;
      if (!parts) return single.forwardTrain(dtype, shape, p, f, activation);
      const W = oneWork(dtype, shape, TRAIN_STEP);
      const size = bytesPerElement(dtype);
      const moments: KernelName = shape.S === 1 ? "trainMoments" : "trainPlaneMoments";
      pool.run(parts.map((part, k) => [fn(moments, dtype), argsOf(moments as "trainPlaneMoments", { ...shape, n: part.n }, {
        ...p, x: view(p.x, part, shape, size), work: p.work + k * W,
      })]));
      mergeMoments(new Float64Array(buffer()), dtype, shape, parts, p.work, W);
      const constants = argsOf("trainConstants", shape, p, f);
      pool.run([[fn("trainConstants", dtype), constants]]);
      shareMap(dtype, shape, p.work, W, parts.length);
      pool.run(normalizeJobs(dtype, shape, p, parts, W));
    },
    forwardTest(dtype, shape, p, eps, again, activation = "none") {
      const parts = activation === "none" ? partsFor(dtype, shape) : null;
      if (!parts) return single.forwardTest(dtype, shape, p, eps, again, activation);
      const W = oneWork(dtype, shape, TEST_STEP);
      if (!again) pool.run([[fn("testConstants", dtype), argsOf("testConstants", shape, p, eps)]]);
      shareMap(dtype, shape, p.work, W, parts.length);
      pool.run(normalizeJobs(dtype, shape, p, parts, W));
    },
    backward(dtype, form, shape, p, activation = "none") {
      const parts = activation === "none" ? partsFor(dtype, shape) : null;
      if (!parts) return single.backward(dtype, form, shape, p, activation);
      const W = oneWork(dtype, shape, BACKWARD_STEP);
      const size = bytesPerElement(dtype);
      const sums: KernelName = shape.S === 1 ? "backwardConstants" : "backwardPlaneConstants";
      // Each thread's sums, with no dgamma/dbeta: those come from the merged sums.
      pool.run(parts.map((part, k) => [fn(sums, dtype), argsOf(sums as "backwardPlaneConstants", form, { ...shape, n: part.n }, {
        ...p, dout: view(p.dout, part, shape, size), x: view(p.x, part, shape, size), dgamma: 0, dbeta: 0, work: p.work + k * W,
      })]));
      mergeSums(new Float64Array(buffer()), dtype, shape, parts.length, p.work, W);
      pool.run([[fn("backwardMap", dtype), argsOf("backwardMap", form, shape.n * shape.S, shape, p)]]);
      if (!p.dx) return;
      shareMap(dtype, shape, p.work, W, parts.length);
      pool.run(parts.map((part, k) => [fn("backwardApply", dtype), argsOf("backwardApply", { ...shape, n: part.n }, {
        ...p, dout: view(p.dout, part, shape, size), x: view(p.x, part, shape, size), dx: view(p.dx, part, shape, size), work: p.work + k * W,
      })]));
    },
    checksum: single.checksum,
  };
}

/**
 * LayerNorm/GroupNorm/InstanceNorm steps of an engine with a pool, split by items (rows of
 * LayerNorm) when the batch has THREAD_MIN_BYTES or more, else the caller's `single`
 * kernels. Each (item, group)'s statistics and output depend on its own values only, so a
 * forward gives one thread's results (parts of a batch normalize as the whole batch does,
 * up to a second pass about the mean that the moments take for all of a part's statistics
 * when one needs it). A backward's dx is one thread's too; dgamma and dbeta add each
 * thread's float64 column sums in thread order, then round.
 */
export function threadedGroups(single: GroupKernels, pool: Pool, buffer: () => ArrayBuffer): GroupKernels {
  const index = new Map(pool.names.map((name, i) => [name, i]));
  const fn = (kernel: KernelName, dtype: Dtype) => index.get(kernel + SUFFIX[dtype])!;
  const partsFor = (dtype: Dtype, s: GroupShape): Part[] | null => {
    if (pool.size < 2 || s.n * s.G * s.K * s.S * bytesPerElement(dtype) < pool.minBytes) return null;
    const parts = partsOf(s.n, s.S, pool.size);
    return parts.length > 1 ? parts : null;
  };
  /** Part k's shape and pointers: its items, statistics and work area (thread k's, W bytes). */
  const partOf = (dtype: Dtype, s: GroupShape, p: GroupPointers, part: Part, k: number, W: number) => {
    const size = bytesPerElement(dtype);
    const data = part.first * s.G * s.K * s.S * size;
    const stats = part.first * s.G * size;
    const at = (ptr: number, offset: number) => (ptr ? ptr + offset : 0);
    const shape: GroupShape = { ...s, n: part.n };
    const q: GroupPointers = {
      ...p, x: at(p.x, data), out: at(p.out, data), dout: at(p.dout, data), dx: at(p.dx, data),
      mean: at(p.mean, stats), meanLo: at(p.meanLo, stats), variance: at(p.variance, stats), invStd: at(p.invStd, stats),
      work: p.work + k * W,
    };
    return { shape, q };
  };
  const groupArgs = (name: "groupApply" | "groupApplyChannelsLast" | "groupBackward" | "groupBackwardChannelsLast" | "groupMomentsChannelsLast", shape: GroupShape, q: GroupPointers) =>
    argsOf(name, shape, q);
  return {
    workBytes: (dtype, s) => pool.size * stride(single.workBytes(dtype, s)),
    forward(dtype, s, p, eps) {
      const parts = partsFor(dtype, s);
      if (!parts) return single.forward(dtype, s, p, eps);
      const W = stride(single.workBytes(dtype, s));
      const each = parts.map((part, k) => partOf(dtype, s, p, part, k, W));
      pool.run(each.map(({ shape, q }) => s.channelsLast
        ? [fn("groupMomentsChannelsLast", dtype), groupArgs("groupMomentsChannelsLast", shape, q)]
        : [fn("trainPlaneMoments", dtype), argsOf("trainPlaneMoments", groupRows(shape), groupStatistics(q))]));
      const factors = { eps, momentum: 1, runVarScale: 1 };
      pool.run(each.map(({ shape, q }) => [fn("trainConstants", dtype), argsOf("trainConstants", groupRows(shape), groupStatistics(q), factors)]));
      const apply = s.channelsLast ? "groupApplyChannelsLast" : "groupApply";
      pool.run(each.map(({ shape, q }) => [fn(apply, dtype), groupArgs(apply, shape, q)]));
    },
    backward(dtype, s, p) {
      const parts = partsFor(dtype, s);
      if (!parts) return single.backward(dtype, s, p);
      const W = stride(single.workBytes(dtype, s));
      const each = parts.map((part, k) => partOf(dtype, s, p, part, k, W));
      const name = s.channelsLast ? "groupBackwardChannelsLast" : "groupBackward";
      pool.run(each.map(({ shape, q }) => [fn(name, dtype), groupArgs(name, shape, { ...q, dgamma: 0, dbeta: 0 })]));
      // Each part's column sums: dgamma's then dbeta's, C f64 each, at the start of its work area.
      const C = s.G * s.K;
      const all = new Float64Array(buffer());
      const first = p.work / 8;
      const second = first + f64Bytes(C) / 8;
      for (let k = 1; k < parts.length; k++) {
        const o = (k * W) / 8;
        for (let c = 0; c < C; c++) {
          all[first + c] += all[first + o + c];
          all[second + c] += all[second + o + c];
        }
      }
      const T = dtype === "float64" ? Float64Array : Float32Array;
      if (p.dgamma) new T(buffer(), p.dgamma, C).set(all.subarray(first, first + C));
      if (p.dbeta) new T(buffer(), p.dbeta, C).set(all.subarray(second, second + C));
    },
  };
}

/**
 * Σ dout and Σ dout·(x − mean) of every thread (f64, after the map arrays of its work
 * area, see backwardConstants) added into thread 0's, in thread order.
 */
function mergeSums(all: Float64Array, dtype: Dtype, shape: KernelShape, threads: number, work: number, W: number): void {
  const { d } = shape;
  const first = (work + MAP_ARRAYS * columnBytes(d, bytesPerElement(dtype))) / 8;
  const second = first + f64Bytes(d) / 8;
  for (let k = 1; k < threads; k++) {
    const o = (k * W) / 8;
    for (let j = 0; j < d; j++) {
      all[first + j] += all[first + o + j];
      all[second + j] += all[second + o + j];
    }
  }
}

/**
 * The moments of the whole batch from each thread's (mean, variance, meanLo in f64 after the
 * map arrays, see trainMoments) into thread 0's: Chan et al.'s pairwise update, in thread
 * order. The mean is summed as a double-double (count·mean exactly, then one division), so
 * mean + meanLo keeps twice f64's precision for float64 data as one thread's does.
 */
export function mergeMoments(all: Float64Array, dtype: Dtype, shape: KernelShape, parts: Part[], work: number, W: number): void {
  const { d, S } = shape;
  const meanAt = (work + MAP_ARRAYS * columnBytes(d, bytesPerElement(dtype))) / 8;
  const varAt = meanAt + f64Bytes(d) / 8;
  const loAt = varAt + f64Bytes(d) / 8;
  const f64 = dtype === "float64";
  const total = shape.n * S;
  for (let j = 0; j < d; j++) {
    let hi = 0, lo = 0;
    for (let k = 0; k < parts.length; k++) {
      const o = (k * W) / 8;
      const c = parts[k].n * S;
      const [p, e] = twoProduct(c, all[meanAt + o + j]);
      // The rounding of this sum joins the low parts so far (it must not replace them).
      const [sum, rounding] = twoSum(hi, p);
      hi = sum;
      lo += rounding + e + (f64 ? c * all[loAt + o + j] : 0);
    }
    // (hi + lo) / total as a double-double.
    const q = hi / total;
    const [p, e] = twoProduct(q, total);
    const q2 = ((hi - p - e) + lo) / total;
    const meanHi = q + q2;
    const meanLo = q2 - (meanHi - q);
    let m2 = 0;
    for (let k = 0; k < parts.length; k++) {
      const o = (k * W) / 8;
      const c = parts[k].n * S;
      const delta = (all[meanAt + o + j] - meanHi) + ((f64 ? all[loAt + o + j] : 0) - meanLo);
      m2 += c * (all[varAt + o + j] + delta * delta);
    }
    all[meanAt + j] = meanHi;
    all[varAt + j] = m2 / total;
    if (f64) all[loAt + j] = meanLo;
  }
}

function twoSum(a: number, b: number): [number, number] {
  const s = a + b;
  const bb = s - a;
  return [s, (a - (s - bb)) + (b - bb)];
}

/** a·b and its rounding error, exactly (Veltkamp's split; no fma in JavaScript). */
function twoProduct(a: number, b: number): [number, number] {
  const p = a * b;
  const split = (v: number) => {
    const t = 134217729 * v;
    const h = t - (t - v);
    return [h, v - h];
  };
  const [ah, al] = split(a);
  const [bh, bl] = split(b);
  return [p, ((ah * bh - p) + ah * bl + al * bh) + al * bl];
}
