// The threads stress test (issue #17): random shapes, APIs, modes, dtypes and thread counts;
// every result checked against the package's float64 JavaScript reference (src/reference.ts),
// every call repeated and required bit-identical, earlier cases re-run later and required to
// give the same bits, and a watchdog thread that reports a call running longer than the limit
// as a deadlock. scripts/stress.mjs runs it on dist/ (npm run stress), test/stress.node.test.ts
// on src/: each passes the package in, so that both run this one generator.
import { Worker } from "node:worker_threads";

/** mulberry32: a small seeded generator of uniform numbers in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of case `index` of a run (splitmix32 of both): any case can be replayed alone. */
export function caseSeed(seed, index) {
  let z = (Math.imul(seed >>> 0, 0x9e3779b9) + Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x7feb352d) >>> 0;
  z = Math.imul(z ^ (z >>> 15), 0x846ca68b) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

const pick = (r, list) => list[Math.floor(r() * list.length)];
const between = (r, lo, hi) => lo + (hi - lo) * r();
const bytesOf = (dtype) => (dtype === "float64" ? 8 : 4);

/** Channel counts: odd, even, powers of two and one past them. */
const ROW_D = [1, 3, 5, 7, 16, 31, 33, 64, 100, 127, 129, 255, 256, 257, 511, 1000, 1023, 1024, 2047, 4096];
const SPATIAL_C = [1, 2, 3, 7, 8, 16, 17, 32, 64, 65, 128, 256];
/** Largest x of a case: the float64 reference runs on every case. */
const MAX_BYTES = 8 << 20;

/**
 * Case `index` of the run with `seed`: its shape (rows (N, D), or (N, C, H, W) / (N, C, L)
 * channels first or last), sized around `minBytes` (the package's THREAD_MIN_BYTES) so that
 * both the split and the caller-only paths run, its API, mode, dtype, activation and thread
 * count. Plain data: the arrays are made from `seed` when the case runs.
 */
export function makeCase(seed, index, minBytes) {
  const s = caseSeed(seed, index);
  const r = rng(s);
  const dtype = r() < 0.6 ? "float32" : "float64";
  const size = bytesOf(dtype);
  // Bytes of x: a third well below the threshold, the rest around and above it.
  const u = r();
  const factor = u < 0.3 ? 2 ** between(r, -8, -1) : u < 0.75 ? 2 ** between(r, -0.5, 0.5) : 2 ** between(r, 0.5, 3.5);
  // And a few tiny ones (down to a single value).
  let elements = u < 0.05 ? 1 + Math.floor(r() * 200) : Math.max(1, Math.round((factor * minBytes) / size));
  let shape, layout;
  const form = r();
  if (form < 0.45) {
    let D = pick(r, ROW_D);
    let N = Math.max(1, Math.round(elements / D));
    const v = r();
    if (v < 0.1) {
      // A few rows (from 1, around THREAD_ROWS_MULTIPLE) of many features.
      N = pick(r, [1, 2, 15, 16, 17, 33]);
      D = Math.max(1, Math.round(elements / N)) | 1;
    } else if (v < 0.2) {
      // Exactly at the threshold, or one row either side of it.
      D = pick(r, [256, 1024, 255, 1023]);
      N = Math.max(1, Math.floor(minBytes / (D * size)) + pick(r, [-1, 0, 1]));
    }
    shape = [N, D];
    layout = "NCHW";
  } else {
    const C = pick(r, SPATIAL_C);
    const N = pick(r, [1, 1, 2, 3, 4, 5, 8, 16]);
    const plane = Math.max(1, Math.round(elements / (N * C)));
    if (r() < 0.2) {
      shape = [N, C, plane];
      layout = r() < 0.5 ? "NCL" : "NLC";
    } else {
      const H = Math.max(1, Math.round(Math.sqrt(plane) * between(r, 0.5, 2)));
      shape = [N, C, H, Math.max(1, Math.round(plane / H))];
      layout = r() < 0.5 ? "NCHW" : "NHWC";
    }
  }
  elements = shape.reduce((a, b) => a * b, 1);
  // Too large a case (a few rows of many features can overshoot): fewer items.
  while (elements * size > MAX_BYTES && shape[0] > 1) {
    shape[0] = Math.max(1, shape[0] >> 1);
    elements = shape.reduce((a, b) => a * b, 1);
  }
  const api = pick(r, ["functional", "functional", "layer", "workspace", "workspace"]);
  const ops = api === "functional" ? ["train", "test", "backward"] : ["train", "test", "backward", "evalBackward"];
  const threads = pick(r, [1, 2, 3, 4]);
  // A layer keeps the engine it was made with: sometimes another thread count is made active after it.
  const switchTo = api !== "functional" && r() < 0.3 ? pick(r, [1, 2, 3, 4].filter((t) => t !== threads)) : 0;
  return {
    index, seed: s, threads, switchTo, dtype, shape, layout, api, op: pick(r, ops),
    activation: r() < 0.2 ? "relu" : "none",
    form: r() < 0.5 ? "compact" : "graph",
    momentum: pick(r, [0.9, 0.1, 0]),
    // Far from zero relative to the spread: the merge of the threads' moments must keep it.
    loc: pick(r, [0, 1, -5, 40, 1e4]),
    scale: pick(r, [0.1, 1, 3, 10]),
    out: r() < 0.3,
    // A workspace on shared memory used through views from before a growth (see runOnce).
    stale: api === "workspace" && threads > 1 && r() < 0.3,
    bytes: elements * size,
  };
}

/** One line that says what a case is. */
export function describeCase(c) {
  const extra = [c.activation === "relu" ? "relu" : null, c.op === "backward" ? c.form : null, c.out && c.api === "functional" ? "out given" : null,
    c.switchTo ? `then ${c.switchTo} thread(s) made active` : null, c.stale ? "views kept across a second workspace" : null].filter(Boolean);
  return `case ${c.index}: ${c.api} ${c.op} ${c.dtype} [${c.shape.join(", ")}] ${c.shape.length > 2 ? c.layout + " " : ""}on ${c.threads} thread(s)` +
    `${extra.length ? ` (${extra.join(", ")})` : ""}, x ${(c.bytes / 1024).toFixed(1)} KiB`;
}

/** Normal numbers (Box–Muller) from a seeded generator. */
function normals(r, length, loc, scale) {
  const a = new Float64Array(length);
  for (let i = 0; i < length; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - r()));
    const angle = 2 * Math.PI * r();
    a[i] = loc + scale * radius * Math.cos(angle);
    if (i + 1 < length) a[i + 1] = loc + scale * radius * Math.sin(angle);
  }
  return a;
}

/** The kernels' view of a case: (n, d, S), channels-last data being rows (N·H·W, C). */
function kernelShape(c) {
  const [N, C] = c.shape;
  const spatial = c.shape.slice(2).reduce((a, b) => a * b, 1);
  return c.layout === "NHWC" || c.layout === "NLC" ? { n: N * spatial, d: C, S: 1 } : { n: N, d: C, S: spatial };
}

/** The case's inputs, of its dtype. */
function inputsOf(c) {
  const r = rng(c.seed ^ 0x5bd1e995);
  const { n, d, S } = kernelShape(c);
  const Type = c.dtype === "float64" ? Float64Array : Float32Array;
  const size = n * d * S;
  return {
    x: Type.from(normals(r, size, c.loc, c.scale)),
    gamma: Type.from(normals(r, d, 1, 0.5)),
    beta: Type.from(normals(r, d, 0, 1)),
    dout: Type.from(normals(r, size, 0, 1)),
    runMean: Type.from(normals(r, d, c.loc, c.scale)),
    runVar: Type.from(normals(r, d, 0, 1), (v) => c.scale * c.scale * (0.5 + Math.abs(v))),
  };
}

const EPS = 1e-5;

/**
 * Runs the case's calls once on the package; `call(name, fn)` times each call under the
 * watchdog. Returns the results (copies: the engine reuses its memory).
 */
function runOnce(pkg, c, inputs, call, notes) {
  const { api: bn } = pkg;
  const { x, gamma, beta, dout, runMean, runVar } = inputs;
  const rows = c.shape.length === 2;
  const copy = (a) => a.slice();
  const train = c.op === "train" || c.op === "backward";
  const result = {};
  if (c.api === "functional") {
    const Type = x.constructor;
    const bnParam = train
      ? { mode: "train", momentum: c.momentum, activation: c.activation }
      : { mode: "test", runningMean: runMean, runningVar: runVar, activation: c.activation };
    const out = c.out ? new Type(x.length) : undefined;
    const fwd = call("forward", () => rows
      ? bn.batchnormForward(x, gamma, beta, bnParam, out ? { shape: c.shape, out } : { shape: c.shape })
      : bn.spatialBatchnormForward(x, gamma, beta, bnParam, c.shape, c.layout, out ? { out } : undefined));
    if (out && fwd.out !== out) throw new Error("the forward did not return the out it was given");
    result.out = fwd.out;
    if (train) {
      result.mean = fwd.cache.mean.slice();
      result.meanLo = fwd.cache.meanLo.slice();
      result.variance = fwd.cache.variance.slice();
      result.runMean = bnParam.runningMean.slice();
      result.runVar = bnParam.runningVar.slice();
    }
    if (c.op === "backward") {
      const outputs = c.out ? { dx: new Type(x.length), dgamma: new Type(gamma.length), dbeta: new Type(gamma.length) } : undefined;
      const backward = c.form === "graph" ? bn.batchnormBackward : rows ? bn.batchnormBackwardAlt : bn.spatialBatchnormBackward;
      const grads = call("backward", () => backward(dout, fwd.cache, outputs));
      Object.assign(result, { dx: grads.dx, dgamma: grads.dgamma, dbeta: grads.dbeta });
    }
    return result;
  }
  // The case's engine active again (the first run may have switched it).
  if (c.switchTo) call(`initSync({ threads: ${c.threads} })`, () => bn.initSync({ threads: c.threads }));
  const layer = call("new BatchNorm", () => new bn.BatchNorm(c.shape[1], {
    dtype: c.dtype, layout: c.layout, activation: c.activation, momentum: c.momentum,
  }));
  if (c.switchTo) call(`initSync({ threads: ${c.switchTo} })`, () => bn.initSync({ threads: c.switchTo }));
  if (layer.engine.threads !== c.threads) throw new Error(`the layer's engine has ${layer.engine.threads} thread(s), made with ${c.threads}`);
  layer.gamma.set(gamma);
  layer.beta.set(beta);
  if (!train) {
    layer.runningMean.set(runMean);
    layer.runningVar.set(runVar);
    layer.eval();
  }
  try {
    if (c.api === "layer") {
      result.out = call("layer.forward", () => layer.forward(x, c.shape));
      if (train) {
        result.runMean = copy(layer.runningMean);
        result.runVar = copy(layer.runningVar);
      }
      if (c.op === "backward" || c.op === "evalBackward") {
        result.dx = call("layer.backward", () => layer.backward(dout));
        result.dgamma = copy(layer.dgamma);
        result.dbeta = copy(layer.dbeta);
      }
      return result;
    }
    const ws = call("layer.workspace", () => layer.workspace(c.shape));
    // Views taken now, then (c.stale) a second workspace, which grows the memory when it does
    // not fit: on shared memory the old views stay valid on the same bytes and are used.
    const views = { x: ws.x, out: ws.out, dout: ws.dout, dx: ws.dx };
    const filler = c.stale ? call("layer.workspace (a second one)", () => layer.workspace(c.shape)) : null;
    const use = (key) => (c.stale ? views[key] : ws[key]);
    if (c.stale && views.x.buffer !== ws.x.buffer) notes.staleViews++;
    try {
      use("x").set(x);
      call("ws.forward", () => ws.forward());
      result.out = copy(use("out"));
      if (train) {
        result.mean = copy(ws.mean);
        result.variance = copy(ws.variance);
        result.runMean = copy(layer.runningMean);
        result.runVar = copy(layer.runningVar);
      }
      if (c.op === "backward" || c.op === "evalBackward") {
        use("dout").set(dout);
        call("ws.backward", () => ws.backward({ form: c.form }));
        result.dx = copy(use("dx"));
        result.dgamma = copy(layer.dgamma);
        result.dbeta = copy(layer.dbeta);
      }
      return result;
    } finally {
      filler?.dispose();
      ws.dispose();
    }
  } finally {
    layer.dispose();
  }
}

/**
 * The float64 reference of a case, with the scale each result's error is measured against:
 * outputs against their magnitude, gradients against γ·invStd·|dout| (dx) and the sums of
 * the absolute values of their terms (dgamma, dbeta), statistics against |x|.
 * `outMask`: the package's forward output, whose out > 0 is a fused ReLU backward's mask
 * (an element within rounding of 0 may fall either side; the output itself is checked).
 */
function referenceOf(pkg, c, inputs, outMask) {
  const ref = pkg.api.reference;
  const { n, d, S } = kernelShape(c);
  const f64 = (a) => Float64Array.from(a);
  const [x, gamma, beta, dout] = [inputs.x, inputs.gamma, inputs.beta, inputs.dout].map(f64);
  const size = n * d * S;
  const train = c.op === "train" || c.op === "backward";
  const want = {};
  const mean = new Float64Array(d), meanLo = new Float64Array(d), variance = new Float64Array(d), invStd = new Float64Array(d);
  const out = new Float64Array(size);
  if (train) {
    // The functional API's running statistics start as zeros, a layer's as zeros and ones.
    const runMean = new Float64Array(d);
    const runVar = new Float64Array(d).fill(c.api === "functional" ? 0 : 1);
    ref.forwardTrain(x, n, d, S, gamma, beta, EPS, c.momentum, 1, runMean, runVar, out, mean, meanLo, variance, invStd);
    if (c.activation === "relu") ref.reluForward(x, n, d, S, gamma, beta, mean, meanLo, invStd, out);
    Object.assign(want, { mean, variance, runMean, runVar });
    want.meanLo = meanLo;
  } else {
    const runMean = f64(inputs.runMean), runVar = f64(inputs.runVar);
    ref.forwardTest(x, n, d, S, gamma, beta, EPS, runMean, runVar, out);
    if (c.activation === "relu") for (let i = 0; i < size; i++) out[i] = Math.max(0, out[i]);
    mean.set(runMean);
    for (let j = 0; j < d; j++) invStd[j] = 1 / Math.sqrt(runVar[j] + EPS);
  }
  want.out = out;
  const scales = { out: Math.max(1, maxAbs(out)), mean: maxAbs(x), runMean: Math.max(1, maxAbs(want.runMean ?? [])) };
  scales.variance = Math.max(maxAbs(variance), Number.MIN_VALUE);
  // mean + meanLo, the mean to twice the precision of its type, against the spread: an error
  // in it is an error in every x − mean (|mean|·u² is what a double-double of T can hold).
  const u = roundoff(c.dtype);
  scales.meanFull = Float64Array.from(variance, (v, j) => Math.sqrt(v) + Math.abs(mean[j]) * u * u);
  scales.runVar = Math.max(1, maxAbs(want.runVar ?? []));
  if (c.op === "backward" || c.op === "evalBackward") {
    const masked = Float64Array.from(dout, (v, i) => (c.activation === "relu" && !(outMask[i] > 0) ? 0 : v));
    const dx = new Float64Array(size), dgamma = new Float64Array(d), dbeta = new Float64Array(d);
    const form = c.op === "evalBackward" ? ref.EVAL_FORM : c.form === "graph" ? ref.GRAPH_FORM : ref.COMPACT_FORM;
    ref.backward(form, masked, x, n, d, S, gamma, mean, train ? meanLo : new Float64Array(d), invStd, dx, dgamma, dbeta);
    Object.assign(want, { dx, dgamma, dbeta });
    let term = 0;
    for (let j = 0; j < d; j++) term = Math.max(term, Math.abs(gamma[j]) * invStd[j]);
    scales.dx = Math.max(maxAbs(dx), term * maxAbs(masked));
    // Per column: Σ|dout·x̂| and Σ|dout|, the size of the terms each sum rounds.
    const absGamma = new Float64Array(d), absBeta = new Float64Array(d);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < d; j++) {
        const o = (i * d + j) * S;
        for (let s = 0; s < S; s++) {
          absBeta[j] += Math.abs(masked[o + s]);
          absGamma[j] += Math.abs(masked[o + s] * (x[o + s] - mean[j] - (train ? meanLo[j] : 0)) * invStd[j]);
        }
      }
    }
    scales.dgamma = absGamma;
    scales.dbeta = absBeta;
  }
  return { want, scales };
}

function maxAbs(a) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Tolerated error relative to each result's scale, in units of the dtype's roundoff (× countFactor). */
const TOLERANCE_ULPS = { out: 1024, mean: 64, meanFull: 64, variance: 1024, runMean: 1024, runVar: 1024, dx: 2048, dgamma: 1024, dbeta: 1024 };
const roundoff = (dtype) => (dtype === "float64" ? 2 ** -53 : 2 ** -24);
/**
 * The reference sums plainly, so its own rounding grows like √count for random data (float64
 * variance at count 627495 was 234 ulps of its scale): the tolerance grows with it.
 */
const countFactor = (c) => {
  const { n, S } = kernelShape(c);
  return Math.max(1, Math.sqrt((n * S) / 4096));
};

/** The largest error of `got` relative to its scale (a number, or one per column j = i mod d). */
function relativeError(got, want, scale) {
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    // A scale of 0 (every dout masked by the ReLU): only an exact 0 passes.
    const s = Math.max(typeof scale === "number" ? scale : scale[i % scale.length], Number.MIN_VALUE);
    const e = Math.abs(got[i] - want[i]) / s;
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  return { worst, at };
}

/** Whether two arrays hold the same bits; the first index that differs, or -1. */
function firstDifference(a, b) {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return Math.floor((i * 4) / a.BYTES_PER_ELEMENT);
  return -1;
}

/** FNV-1a of every result, in key order: a case's bits in one number. */
function hashOf(result) {
  let h = 0x811c9dc5;
  for (const key of Object.keys(result).sort()) {
    const a = result[key];
    const words = new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4);
    for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193) >>> 0;
  }
  return h;
}

/**
 * A thread that watches the calls of this one: a call still running after `limitMs` is a
 * deadlock. It writes what ran (straight to stderr: this thread is blocked) and kills the
 * process, whose parent (scripts/stress.mjs, or vitest) sees it fail.
 */
export function startWatchdog(limitMs) {
  const ctl = new Int32Array(new SharedArrayBuffer(16 + 8 + 4096));
  const started = new Float64Array(ctl.buffer, 16, 1);
  const text = new Uint8Array(ctl.buffer, 24, 4096);
  const worker = new Worker(`
    const { workerData: { ctl, limitMs } } = require("node:worker_threads");
    const { writeSync } = require("node:fs");
    const state = new Int32Array(ctl, 0, 4), started = new Float64Array(ctl, 16, 1), text = new Uint8Array(ctl, 24, 4096);
    for (;;) {
      Atomics.wait(state, 3, 0, 250);
      if (Atomics.load(state, 3) !== 0) break;
      if (Atomics.load(state, 0) === 1 && Date.now() - started[0] > limitMs) {
        const what = new TextDecoder().decode(text.slice(0, state[2]));
        writeSync(2, "\\nstress: DEADLOCK: a call has run for more than " + limitMs + " ms: " + what + "\\n");
        process.kill(process.pid, "SIGKILL");
      }
    }
  `, { eval: true, workerData: { ctl: ctl.buffer, limitMs } });
  worker.unref();
  return {
    start(what) {
      const bytes = new TextEncoder().encode(what).slice(0, 4096);
      text.set(bytes);
      ctl[2] = bytes.length;
      started[0] = Date.now();
      Atomics.store(ctl, 0, 1);
    },
    end() {
      Atomics.store(ctl, 0, 0);
    },
    stop() {
      Atomics.store(ctl, 3, 1);
      Atomics.notify(ctl, 3);
      void worker.terminate();
    },
  };
}

/**
 * Whether docs/threads.md says the case's calls split between threads: more than one thread,
 * no fused activation, x of THREAD_MIN_BYTES or more in more than one part (rows come in parts
 * of 16, channels-first data in items), and a step that is split: every one but the copying
 * test-mode forward (functional, or a layer's in eval mode), which runs in parts below the threshold.
 */
function splits(c, minBytes) {
  const { n, S } = kernelShape(c);
  const parts = S === 1 ? n > 16 : n > 1;
  const copyingTest = c.op === "test" && c.api !== "workspace";
  return c.threads > 1 && c.activation === "none" && c.bytes >= minBytes && parts && !copyingTest;
}

/**
 * Runs one case: its calls twice (the repeat must give the same bits), the first results
 * against the float64 reference. Returns what it found; `failures` empty when all is well.
 */
export async function runCase(pkg, c, watchdog, limitMs) {
  const failures = [];
  const times = [];
  const notes = { staleViews: 0 };
  let calls = 0;
  const call = (name, fn) => {
    watchdog?.start(`${name} of ${describeCase(c)}`);
    const t0 = performance.now();
    try {
      return fn();
    } finally {
      const ms = performance.now() - t0;
      watchdog?.end();
      calls++;
      times.push(ms);
      if (ms > limitMs) failures.push(`${name} took ${ms.toFixed(0)} ms (more than ${limitMs}): a deadlock`);
    }
  };
  watchdog?.start(`init({ threads: ${c.threads} }) for ${describeCase(c)}`);
  try {
    await pkg.api.init({ threads: c.threads });
  } finally {
    watchdog?.end();
  }
  const threads = pkg.api.threads();
  if (threads !== c.threads) failures.push(`threads() is ${threads} after init({ threads: ${c.threads} })`);
  const engine = pkg.engine();
  const forksBefore = engine.pool?.forks ?? 0;
  const inputs = inputsOf(c);
  let first, second;
  try {
    first = runOnce(pkg, c, inputs, call, notes);
    second = runOnce(pkg, c, inputs, call, notes);
  } catch (e) {
    failures.push(`threw ${e && e.stack ? e.stack.split("\n").slice(0, 3).join(" | ") : String(e)}`);
    return { c, failures, calls, forks: 0, errors: {}, ratios: {}, hash: 0, slowest: maxAbs(times), staleViews: notes.staleViews };
  }
  const forks = (engine.pool?.forks ?? 0) - forksBefore;
  if (forks > 0 && c.bytes < pkg.minBytes) failures.push(`forked ${forks} time(s) below the threshold (${c.bytes} < ${pkg.minBytes} bytes)`);
  if (forks === 0 && splits(c, pkg.minBytes)) failures.push(`ran on the caller alone, at or above the threshold (${c.bytes} ≥ ${pkg.minBytes} bytes)`);
  for (const key of Object.keys(first)) {
    const at = firstDifference(first[key], second[key]);
    if (at >= 0) failures.push(`not deterministic: ${key} differs on the repeat at ${at} (${first[key][at]} then ${second[key][at]})`);
  }
  const { want, scales } = referenceOf(pkg, c, inputs, first.out);
  const errors = {}, ratios = {};
  const u = roundoff(c.dtype) * countFactor(c);
  const checked = { ...first };
  if (first.meanLo) {
    // (mean − mean') + (meanLo − meanLo'): exact differences of nearby values, then one rounding.
    checked.meanFull = Float64Array.from(first.mean, (m, j) => (m - want.mean[j]) + (first.meanLo[j] - want.meanLo[j]));
    want.meanFull = new Float64Array(first.mean.length);
  }
  for (const key of Object.keys(checked)) {
    if (!want[key] || key === "meanLo") continue;
    const { worst, at } = relativeError(checked[key], want[key], scales[key]);
    errors[key] = worst;
    ratios[key] = worst / (TOLERANCE_ULPS[key] * u);
    if (!(worst <= TOLERANCE_ULPS[key] * u)) {
      failures.push(`${key} is off by ${worst.toExponential(2)} of its scale at ${at} (got ${checked[key][at]}, want ${want[key][at]}; tolerance ${(TOLERANCE_ULPS[key] * u).toExponential(2)})`);
    }
  }
  return { c, failures, calls, forks, errors, ratios, hash: hashOf(first), slowest: maxAbs(times), staleViews: notes.staleViews };
}

/**
 * The stress run: cases of `seed` from `from` until `seconds` have passed (or `count` cases),
 * each now and then followed by a re-run of an earlier one, which must give the same bits.
 * `log` gets progress lines and each failure. Returns the summary.
 */
export async function stress(pkg, { seconds = 180, seed, from = 0, count = Infinity, limitMs = 30_000, log = () => {}, watchdog = true } = {}) {
  const dog = watchdog ? startWatchdog(limitMs) : null;
  const start = performance.now();
  const summary = {
    seed, seconds: 0, cases: 0, calls: 0, failures: [], reruns: 0, threads: {}, apis: {}, ops: {}, dtypes: {},
    kinds: {}, shapes: new Set(), minBytes: Infinity, maxBytes: 0, batchOfOne: 0, splitCases: 0, callerOnlyCases: 0,
    belowThreshold: 0, staleViewCases: 0, maxError: { float32: {}, float64: {} },
    maxRatio: { float32: { ratio: 0, key: "", what: "" }, float64: { ratio: 0, key: "", what: "" } }, slowest: { ms: 0, what: "" },
  };
  const hashes = new Map();
  const count1 = (record, key) => (record[key] = (record[key] ?? 0) + 1);
  const r = rng(seed ^ 0x2545f491);
  let lastLog = start;
  const record = (found, rerun) => {
    const { c } = found;
    summary.calls += found.calls;
    if (found.slowest > summary.slowest.ms) summary.slowest = { ms: found.slowest, what: describeCase(c) };
    for (const f of found.failures) {
      const line = `${describeCase(c)}${rerun ? " (re-run)" : ""}: ${f}`;
      summary.failures.push(line);
      log(`FAIL ${line}\n  replay: npm run stress -- --seed ${seed} --case ${c.index}`);
    }
    if (rerun) return;
    summary.cases++;
    count1(summary.threads, c.threads);
    count1(summary.apis, c.api);
    count1(summary.ops, c.op);
    count1(summary.dtypes, c.dtype);
    count1(summary.kinds, c.shape.length === 2 ? "rows" : c.layout);
    summary.shapes.add(`${c.dtype} ${c.layout} ${c.shape.join("x")}`);
    summary.minBytes = Math.min(summary.minBytes, c.bytes);
    summary.maxBytes = Math.max(summary.maxBytes, c.bytes);
    if (c.shape[0] === 1) summary.batchOfOne++;
    if (found.staleViews > 0) summary.staleViewCases++;
    if (c.bytes < pkg.minBytes) summary.belowThreshold++;
    if (found.forks > 0) summary.splitCases++;
    else summary.callerOnlyCases++;
    for (const [key, e] of Object.entries(found.errors)) {
      const m = summary.maxError[c.dtype];
      if (!(e <= (m[key] ?? 0))) m[key] = e;
      const ratio = found.ratios[key];
      if (!(ratio <= summary.maxRatio[c.dtype].ratio)) summary.maxRatio[c.dtype] = { ratio, key, what: describeCase(c) };
    }
  };
  try {
    for (let index = from; index < from + count; index++) {
      if (performance.now() - start > seconds * 1000) break;
      const c = makeCase(seed, index, pkg.minBytes);
      const found = await runCase(pkg, c, dog, limitMs);
      record(found, false);
      if (found.failures.length === 0) hashes.set(index, found.hash);
      if (hashes.size > 1 && r() < 0.1) {
        // An earlier case again, after other shapes and thread counts: the same bits.
        const keys = [...hashes.keys()];
        const earlier = keys[Math.floor(r() * keys.length)];
        const again = await runCase(pkg, makeCase(seed, earlier, pkg.minBytes), dog, limitMs);
        summary.reruns++;
        if (again.failures.length === 0 && again.hash !== hashes.get(earlier)) again.failures.push("not deterministic: a re-run gave other bits than the first run");
        record(again, true);
      }
      if (performance.now() - lastLog > 10_000) {
        lastLog = performance.now();
        log(`  ${((lastLog - start) / 1000).toFixed(0)} s: ${summary.cases} cases, ${summary.calls} calls, ${summary.failures.length} failures`);
      }
    }
  } finally {
    dog?.stop();
  }
  summary.seconds = (performance.now() - start) / 1000;
  return summary;
}

/** The summary as lines of text. */
export function formatSummary(s, minBytes) {
  const list = (record) => Object.entries(record).map(([k, v]) => `${k} ${v}`).join(", ");
  const errors = (dtype) => {
    const entries = Object.entries(s.maxError[dtype]);
    if (!entries.length) return "none";
    const worst = s.maxRatio[dtype];
    return `${entries.map(([k, e]) => `${k} ${e.toExponential(1)}`).join(", ")}\n` +
      `      worst ${worst.ratio.toFixed(3)} of its tolerance (${worst.key}, ${worst.what})`;
  };
  return [
    `stress: seed ${s.seed}, ${s.seconds.toFixed(0)} s, ${s.cases} cases (+${s.reruns} re-runs), ${s.calls} calls, ${s.failures.length} failure(s)`,
    `  threads: ${list(s.threads)}`,
    `  APIs: ${list(s.apis)}; modes: ${list(s.ops)}; ${list(s.dtypes)}`,
    `  shapes: ${s.shapes.size} distinct (${list(s.kinds)}), x from ${s.minBytes} B to ${(s.maxBytes / 2 ** 20).toFixed(2)} MiB, ${s.batchOfOne} with N = 1`,
    `  paths: ${s.splitCases} cases split between threads, ${s.callerOnlyCases} on the caller alone (${s.belowThreshold} below THREAD_MIN_BYTES = ${minBytes})`,
    `  max error / scale: float32 ${errors("float32")}`,
    `                     float64 ${errors("float64")}`,
    `  stale views: ${s.staleViewCases} workspace cases read and wrote through views taken before the shared memory grew`,
    `  determinism: every case run twice in a row and ${s.reruns} earlier cases re-run later, bits compared (differences are failures)`,
    `  slowest call: ${s.slowest.ms.toFixed(0)} ms (${s.slowest.what})`,
    ...s.failures.map((f) => `  FAIL ${f}`),
  ];
}
