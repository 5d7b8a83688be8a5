// Types of scripts/stress-core.mjs, for test/stress.node.test.ts.

/** What the stress run needs of the package: its API, the active engine, the threads threshold. */
export interface StressPackage {
  api: typeof import("../src/index.js");
  engine: () => { readonly threads: number; readonly pool?: { forks: number } };
  minBytes: number;
}

/** One random case: plain data, its arrays made from `seed` when it runs. */
export interface StressCase {
  index: number;
  seed: number;
  threads: number;
  /** A layer's case: another thread count made active after the layer is created (0: none). */
  switchTo: number;
  dtype: "float32" | "float64";
  shape: number[];
  layout: "NCHW" | "NHWC" | "NCL" | "NLC";
  api: "functional" | "layer" | "workspace";
  op: "train" | "test" | "backward" | "evalBackward";
  activation: "none" | "relu";
  form: "compact" | "graph";
  momentum: number;
  loc: number;
  scale: number;
  out: boolean;
  /** A workspace case on shared memory that uses views taken before a second workspace is made. */
  stale: boolean;
  bytes: number;
}

export interface StressSummary {
  seed: number;
  seconds: number;
  cases: number;
  calls: number;
  failures: string[];
  reruns: number;
  threads: Record<string, number>;
  apis: Record<string, number>;
  ops: Record<string, number>;
  dtypes: Record<string, number>;
  kinds: Record<string, number>;
  shapes: Set<string>;
  minBytes: number;
  maxBytes: number;
  batchOfOne: number;
  /** Cases whose views were taken before the memory grew (and still used). */
  staleViewCases: number;
  splitCases: number;
  callerOnlyCases: number;
  belowThreshold: number;
  maxError: { float32: Record<string, number>; float64: Record<string, number> };
  /** The largest error as a fraction of its tolerance, per dtype, and where. */
  maxRatio: Record<"float32" | "float64", { ratio: number; key: string; what: string }>;
  slowest: { ms: number; what: string };
}

export interface StressOptions {
  seconds?: number;
  seed: number;
  from?: number;
  count?: number;
  limitMs?: number;
  log?: (line: string) => void;
  watchdog?: boolean;
}

export function rng(seed: number): () => number;
export function caseSeed(seed: number, index: number): number;
export function makeCase(seed: number, index: number, minBytes: number): StressCase;
export function describeCase(c: StressCase): string;
export function startWatchdog(limitMs: number): { start(what: string): void; end(): void; stop(): void };
export function runCase(
  pkg: StressPackage, c: StressCase, watchdog: ReturnType<typeof startWatchdog> | null, limitMs: number,
): Promise<{ c: StressCase; failures: string[]; calls: number; forks: number; errors: Record<string, number>; ratios: Record<string, number>; hash: number; slowest: number; staleViews: number }>;
export function stress(pkg: StressPackage, options: StressOptions): Promise<StressSummary>;
export function formatSummary(summary: StressSummary, minBytes: number): string[];
