// The threads stress test (scripts/stress-core.mjs, `npm run stress` for minutes) for ~20 s on
// the sources: random shapes straddling THREAD_MIN_BYTES, APIs, modes, dtypes and 1–4
// threads, each result against the float64 reference, repeats bit for bit, no deadlock (a
// watchdog thread kills the run if a call blocks for 30 s). A new seed each run, printed,
// so that the suite keeps exploring; a failure names the command that replays it.
import { randomInt } from "node:crypto";
import { afterAll, expect, test } from "vitest";
import * as api from "../src/index.js";
import { engine } from "../src/wasm.js";
import { THREAD_MIN_BYTES } from "../src/tuning.js";
import { formatSummary, stress } from "../scripts/stress-core.mjs";

afterAll(() => api.initSync());

test("random shapes, modes and thread counts: correct, deterministic, no deadlock", { timeout: 120_000 }, async () => {
  const seed = Number(process.env.BATCHNORM_STRESS_SEED ?? randomInt(2 ** 31));
  const summary = await stress({ api, engine, minBytes: THREAD_MIN_BYTES }, { seed, seconds: 20 });
  const lines = formatSummary(summary, THREAD_MIN_BYTES);
  console.log(lines.join("\n"));
  expect(summary.failures, `seed ${seed} (replay: npm run stress -- --seed ${seed}, or BATCHNORM_STRESS_SEED=${seed})`).toEqual([]);
  // The run covered what it is for: every thread count, both paths, N = 1.
  expect(Object.keys(summary.threads).sort()).toEqual(["1", "2", "3", "4"]);
  expect(summary.splitCases).toBeGreaterThan(0);
  expect(summary.belowThreshold).toBeGreaterThan(0);
  expect(summary.cases).toBeGreaterThan(20);
});
