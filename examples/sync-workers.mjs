// Synchronized batch norm across worker_threads: K workers each hold one shard of a batch
// and exchange their statistics and gradient sums over MessagePorts, through the main
// thread as a hub (an all-gather: every worker receives every worker's array, in rank
// order). Run it after `npm run build`:
//
//   node examples/sync-workers.mjs
//
// It prints how far the workers' out, dx, dgamma, dbeta and running statistics are from one
// process normalizing the whole batch. test/sync.node.test.ts runs it for K = 2 and 3.
import { MessageChannel, Worker, isMainThread, workerData } from "node:worker_threads";
import { fileURLToPath } from "node:url";
import {
  localGradientSums, localStatistics, mergeStatistics, spatialBatchnormBackward, spatialBatchnormForward, sumGradientSums,
  syncBatchnormBackward, syncBatchnormForward,
} from "../dist/index.js";

/** A port's messages as promises, in order (none lost between two awaits). */
function inbox(port) {
  const queue = [];
  const waiting = [];
  port.on("message", (message) => (waiting.length ? waiting.shift()(message) : queue.push(message)));
  return () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiting.push(resolve)));
}

/** One worker: its shard through one synchronized training step of the batch norm. */
async function worker({ port, x, dout, gamma, beta, shape, layout, bnParam }) {
  const next = inbox(port);
  // Send this worker's array, receive everyone's (rank order, the same on every worker).
  const allGather = async (array) => {
    port.postMessage(array);
    return next();
  };
  const options = { shape, layout };
  const statistics = mergeStatistics(await allGather(localStatistics(x, gamma.length, options)));
  const { out, cache } = syncBatchnormForward(x, gamma, beta, statistics, bnParam, options);
  const sums = sumGradientSums(await allGather(localGradientSums(dout, cache)));
  const { dx, dgamma, dbeta } = syncBatchnormBackward(dout, cache, sums);
  port.postMessage({ out, dx, dgamma, dbeta, runningMean: bnParam.runningMean, runningVar: bnParam.runningVar });
  port.close();
}

/**
 * Runs one synchronized step on one worker thread per shard. shards[k]: { x, dout, shape }
 * (shape [N_k, C, ...], N_k may be 0); common: { gamma, beta, layout, bnParam }, copied to
 * each worker. Returns each worker's { out, dx, dgamma, dbeta, runningMean, runningVar }.
 */
export async function runOnWorkers(shards, common) {
  const channels = shards.map(() => new MessageChannel());
  const workers = shards.map((shard, k) => new Worker(fileURLToPath(import.meta.url), {
    workerData: { ...common, ...shard, port: channels[k].port2 },
    transferList: [channels[k].port2],
  }));
  const failed = new Promise((_, reject) => workers.forEach((w) => w.on("error", reject)));
  const inboxes = channels.map((c) => inbox(c.port1));
  const gather = () => Promise.race([Promise.all(inboxes.map((next) => next())), failed]);
  try {
    for (let round = 0; round < 2; round++) {
      const all = await gather();
      for (const c of channels) c.port1.postMessage(all);
    }
    return await gather();
  } finally {
    for (const c of channels) c.port1.close();
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

function concat(parts) {
  const all = new parts[0].constructor(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

function maxDifference(a, b) {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

async function main() {
  const [N, C, H, W] = [12, 4, 5, 5];
  const sizes = [5, 0, 7];
  const random = (n, loc = 0) => Float64Array.from({ length: n }, () => loc + Math.random() * 2 - 1);
  const item = C * H * W;
  const x = random(N * item, 3);
  const dout = random(N * item);
  const gamma = random(C, 1);
  const beta = random(C);
  const state = () => ({ mode: "train", momentum: 0.1, momentumConvention: "pytorch", runningVariance: "unbiased", runningMean: new Float64Array(C), runningVar: new Float64Array(C).fill(1) });
  let at = 0;
  const shards = sizes.map((n) => {
    const part = { x: x.slice(at * item, (at + n) * item), dout: dout.slice(at * item, (at + n) * item), shape: [n, C, H, W] };
    at += n;
    return part;
  });
  const results = await runOnWorkers(shards, { gamma, beta, layout: "NCHW", bnParam: state() });
  // One process, the whole batch.
  const bnParam = state();
  const forward = spatialBatchnormForward(x, gamma, beta, bnParam, [N, C, H, W]);
  const backward = spatialBatchnormBackward(dout, forward.cache);
  console.log(`${sizes.length} workers, shards of ${sizes.join(", ")} items; largest difference from one process:`);
  console.log(`  out ${maxDifference(concat(results.map((r) => r.out)), forward.out)}, dx ${maxDifference(concat(results.map((r) => r.dx)), backward.dx)}`);
  for (const [k, r] of results.entries()) {
    console.log(
      `  worker ${k}: dgamma ${maxDifference(r.dgamma, backward.dgamma)}, dbeta ${maxDifference(r.dbeta, backward.dbeta)}, ` +
      `running mean ${maxDifference(r.runningMean, bnParam.runningMean)}, running var ${maxDifference(r.runningVar, bnParam.runningVar)}`,
    );
  }
}

if (!isMainThread && workerData?.port) await worker(workerData);
else if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
