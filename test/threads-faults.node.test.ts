// Faults of the worker pool (src/threads.ts): a worker that throws, one whose thread ends on
// a job, one terminated from outside. The caller gets a ThreadError or the call completes on
// fewer threads, never a hang (each test has a timeout), and the package keeps working:
// results are checked against the js backend, threads() against the pool's real size.
import { afterAll, expect, test } from "vitest";
import { type BNParam, batchnormBackwardAlt, batchnormForward, init, initSync, spatialBatchnormForward, threads, ThreadError } from "../src/index.js";
import { engine } from "../src/wasm.js";
import { expectClose, expectIdentical, expectRelClose, randn, tolerance, typed } from "./helpers.js";

afterAll(() => initSync());

const [N, D] = [1024, 256]; // 1 MiB of float32: above the threading threshold
const x = typed("float32", randn(41, N * D, 3, 2));
const gamma = typed("float32", randn(42, D, 1, 0.5));
const beta = typed("float32", randn(43, D));
const dout = typed("float32", randn(44, N * D));

/** Train forward and compact backward on the active engine. */
function run() {
  const bnParam: BNParam<Float32Array> = { mode: "train", momentum: 0 };
  const fwd = batchnormForward(x, gamma, beta, bnParam, { shape: [N, D] });
  const bwd = batchnormBackwardAlt(dout, fwd.cache!);
  return { out: fwd.out, dx: bwd.dx, dgamma: bwd.dgamma, mean: fwd.cache!.mean };
}

initSync({ backend: "js" });
const oracle = run();

function expectOracle(got: ReturnType<typeof run>, what: string) {
  const tol = tolerance("float32");
  expectClose(got.out, oracle.out, tol.abs, `${what} out`);
  expectRelClose(got.mean, oracle.mean, tol.rel, `${what} mean`);
  expectRelClose(got.dx, oracle.dx, tol.rel * 8, `${what} dx`);
  expectRelClose(got.dgamma, oracle.dgamma, tol.rel * 4, `${what} dgamma`);
}

/** A 2-thread engine with a full pool (init makes a new one after a fault) and its healthy results. */
async function twoThreads() {
  await init({ threads: 2 });
  expect(threads()).toBe(2);
  const pool = engine().pool!;
  expect(pool.lost).toBe(0);
  return { pool, healthy: run() };
}

test("a worker that throws: the call completes on the caller, the same results, then 1 thread", { timeout: 30_000 }, async () => {
  const { pool, healthy } = await twoThreads();
  pool.injectFault(0, "throw");
  const faulted = run();
  expect(pool.recovered).toBe(1);
  expect(pool.departures).toEqual([expect.stringMatching(/^it threw: Error: fault injected by a test/)]);
  expect(threads()).toBe(1);
  // Its part was run again in the same work area: bit for bit what the healthy call made.
  for (const key of ["out", "dx", "dgamma", "mean"] as const) expectIdentical(faulted[key], healthy[key], key);
  expectOracle(run(), "after the fault, 1 thread");
  expect(pool.forks).toBeGreaterThan(0);
});

test("a worker whose thread ends on a job: the call completes, then 1 thread", { timeout: 30_000 }, async () => {
  const { pool, healthy } = await twoThreads();
  pool.waitLimitMs = 20_000; // the end must be seen at once, not by the time limit
  pool.injectFault(0, "exit");
  const t0 = performance.now();
  const faulted = run();
  expect(performance.now() - t0).toBeLessThan(10_000);
  expect(pool.departures).toEqual(["its thread ended"]);
  expect(threads()).toBe(1);
  for (const key of ["out", "dx", "dgamma", "mean"] as const) expectIdentical(faulted[key], healthy[key], key);
  expectOracle(run(), "after the fault, 1 thread");
});

test("a worker terminated from outside, seen by the time limit: a ThreadError, then 1 thread", { timeout: 30_000 }, async () => {
  const { pool } = await twoThreads();
  pool.waitLimitMs = 300;
  pool.injectFault(0, "terminate");
  // Called at once, before the worker's exit event can run: only the time limit can tell.
  let error: unknown = null;
  try {
    run();
  } catch (e) {
    error = e;
  }
  // Either the worker ended before it saw the job (its exit handler said so: the call
  // completed on the caller) or the time limit gave it up (a ThreadError).
  if (error !== null) {
    expect(error).toBeInstanceOf(ThreadError);
    expect(String(error)).toMatch(/ThreadError: batchnorm-wasm: a worker failed \(it did not finish its part within 300 ms.*goes on with 1 thread/);
  }
  expect(threads()).toBe(1);
  expectOracle(run(), "after the fault, 1 thread");
});

test("a worker terminated between calls leaves the pool on its exit event: the next call runs on 1 thread", { timeout: 30_000 }, async () => {
  const { pool } = await twoThreads();
  pool.injectFault(0, "terminate");
  const end = Date.now() + 10_000;
  while (threads() === 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  expect(threads()).toBe(1);
  const forks = pool.forks;
  expectOracle(run(), "1 thread");
  expect(pool.forks).toBe(forks);
});

test("after faults init({ threads: 2 }) makes a full pool again; layers keep theirs; NCHW still right", { timeout: 30_000 }, async () => {
  const { pool } = await twoThreads();
  pool.injectFault(0, "throw");
  run();
  expect(threads()).toBe(1);
  const { pool: fresh } = await twoThreads();
  expect(fresh).not.toBe(pool);
  const shape = [4, 64, 32, 32]; // 1 MiB
  const xs = typed("float32", randn(45, 4 * 64 * 1024, -1, 3));
  const g = typed("float32", randn(46, 64)), b = typed("float32", randn(47, 64));
  const forks = fresh.forks;
  const two = spatialBatchnormForward(xs, g, b, { mode: "train" }, shape).out;
  expect(fresh.forks).toBeGreaterThan(forks);
  initSync({ backend: "js" });
  const want = spatialBatchnormForward(xs, g, b, { mode: "train" }, shape).out;
  expectClose(two, want, tolerance("float32").abs, "NCHW out");
});
