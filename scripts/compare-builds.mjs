// Compares two builds of the package bit for bit on a sweep of shapes, dtypes, layouts and
// backends: node scripts/compare-builds.mjs OLD_DIST [NEW_DIST, default ./dist].
// A refactoring that must not change a result runs this against the previous tree's dist/.
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [oldDir, newDir = "dist"] = process.argv.slice(2);
if (!oldDir) {
  console.error("usage: node scripts/compare-builds.mjs OLD_DIST [NEW_DIST]");
  process.exit(2);
}
const load = (dir) => import(pathToFileURL(resolve(dir, "index.js")).href);
const [A, B] = [await load(oldDir), await load(newDir)];

let seed = 1;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
const data = (Type, length, loc, scale) => Type.from({ length }, () => loc + scale * random());

const ROWS = [[1, 1], [1, 7], [2, 3], [3, 5], [7, 1], [16, 16], [33, 31], [100, 64], [1000, 3], [257, 257], [64, 1024], [1003, 1031], [65536, 1], [16384, 3], [2048, 1024], [8192, 260]];
const SPATIAL = [[[2, 3, 4, 5], "NCHW"], [[2, 3, 4, 5], "NHWC"], [[8, 16, 7, 7], "NCHW"], [[8, 16, 7, 7], "NHWC"], [[4, 32, 28, 28], "NCHW"], [[4, 32, 28, 28], "NHWC"], [[3, 5, 11], "NCL"]];

const differences = [];
let compared = 0;
function same(what, a, b) {
  compared++;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (x.length !== y.length || x.some((v, i) => v !== y[i])) differences.push(what);
}

/** Every result of one case through an API, as named arrays. */
function results(api, Type, shape, layout, n, d, inputs) {
  const { x, gamma, beta, dout, xTest } = inputs;
  const out = {};
  const bnParam = { mode: "train", momentum: 0.9 };
  const forward = shape
    ? (xx, p) => api.spatialBatchnormForward(xx, gamma, beta, p, shape, layout)
    : (xx, p) => api.batchnormForward(xx, gamma, beta, p);
  const f = forward(x, bnParam);
  out.out = f.out;
  for (const k of ["mean", "meanLo", "variance", "invStd"]) out[`cache.${k}`] = f.cache[k];
  out.runningMean = bnParam.runningMean;
  out.runningVar = bnParam.runningVar;
  const compact = shape ? api.spatialBatchnormBackward(dout, f.cache) : api.batchnormBackwardAlt(dout, f.cache);
  for (const k of ["dx", "dgamma", "dbeta"]) out[`compact.${k}`] = compact[k];
  if (!shape) {
    const graph = api.batchnormBackward(dout, f.cache);
    for (const k of ["dgamma", "dbeta"]) out[`graph.${k}`] = graph[k];
    out["graph.dx"] = graph.dx;
  }
  bnParam.mode = "test";
  out.test = forward(xTest, bnParam).out;
  const bn = shape
    ? new api.BatchNorm(d, { dtype: Type === Float64Array ? "float64" : "float32", layout: layout === "NCL" ? "NCHW" : layout === "NLC" ? "NHWC" : layout })
    : new api.BatchNorm(d, { dtype: Type === Float64Array ? "float64" : "float32" });
  bn.gamma.set(gamma);
  bn.beta.set(beta);
  out["layer.out"] = bn.forward(x, shape);
  out["layer.dx"] = bn.backward(dout);
  out["layer.dgamma"] = bn.dgamma;
  out["layer.runningVar"] = bn.runningVar;
  bn.eval();
  out["layer.eval"] = bn.forward(xTest, shape);
  out["layer.evalDx"] = bn.backward(dout);
  return out;
}

for (const backend of ["simd", "scalar", "js"]) {
  A.initSync({ backend });
  B.initSync({ backend });
  for (const Type of [Float32Array, Float64Array]) {
    const cases = [
      ...ROWS.map(([n, d]) => ({ n, d, shape: undefined, layout: undefined })),
      ...SPATIAL.map(([shape, layout]) => ({ n: shape[0], d: shape[1], shape, layout })),
    ];
    for (const { n, d, shape, layout } of cases) {
      const size = shape ? shape.reduce((a, b) => a * b, 1) : n * d;
      if (backend === "js" && size > 300_000) continue;
      const loc = Type === Float64Array ? 1e6 : 1e3;
      const inputs = {
        x: data(Type, size, loc, 3), gamma: data(Type, d, 1, 0.5), beta: data(Type, d, 0, 1),
        dout: data(Type, size, 0, 1), xTest: data(Type, size, loc, 3),
      };
      const name = `${backend} ${Type.name} ${shape ? `[${shape}] ${layout}` : `(${n}, ${d})`}`;
      const a = results(A, Type, shape, layout, n, d, inputs);
      const b = results(B, Type, shape, layout, n, d, inputs);
      for (const key of Object.keys(a)) same(`${name} ${key}`, a[key], b[key]);
    }
  }
}
const graph = differences.filter((w) => w.endsWith("graph.dx"));
const other = differences.filter((w) => !w.endsWith("graph.dx"));
console.log(`${compared} arrays compared: ${compared - differences.length} bit-identical; graph-form dx differs in ${graph.length}; others differ in ${other.length}`);
for (const w of other) console.log(`  differs: ${w}`);
process.exit(other.length ? 1 : 0);
