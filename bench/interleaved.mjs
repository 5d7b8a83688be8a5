// Timings of several implementations taken alternately, sample by sample, so that a change in
// the machine's load (2 shared cores here) falls on all of them alike: the ratios of their
// medians are fairer than those of timings taken one after another.

/**
 * Median ms per call of each of `runs`, over `samples` interleaved samples of `reps` calls
 * each (after `reps` warm-up calls). A run is a function, timed here, or an object whose
 * `sample(reps)` times itself (another process, say) and resolves to ms per call.
 */
export async function interleaved(runs, samples, reps) {
  const times = runs.map(() => []);
  const once = async (run) => {
    if (typeof run !== "function") return run.sample(reps);
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) run();
    return (performance.now() - t0) / reps;
  };
  for (const run of runs) await once(run);
  for (let s = 0; s < samples; s++) {
    for (let k = 0; k < runs.length; k++) times[k].push(await once(runs[k]));
  }
  return times.map((t) => t.sort((a, b) => a - b)[t.length >> 1]);
}
