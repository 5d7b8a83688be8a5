// A fully connected network, affine → [batch norm | layer norm] → ReLU blocks and a softmax
// loss, in plain TypeScript except for the normalization: the package's BatchNorm layer with
// the ReLU fused in (activation: 'relu'), or its LayerNorm followed by a ReLU here, each on
// its zero-copy workspace: each affine layer writes its output straight into the
// workspace's x, the upstream gradient goes into ws.dout.
import { BatchNorm, type BatchNormWorkspace, LayerNorm, type NormWorkspace } from "batchnorm-wasm";
import { gaussian, rng } from "./data.js";

/** out (n, dout) = x (n, din) · W (din, dout) + b. */
function affineForward(x: Float32Array, n: number, din: number, W: Float32Array, b: Float32Array, dout: number, out: Float32Array): void {
  for (let i = 0; i < n; i++) {
    const o = i * dout;
    out.set(b, o);
    for (let k = 0; k < din; k++) {
      const xv = x[i * din + k];
      if (xv === 0) continue;
      const w = k * dout;
      for (let j = 0; j < dout; j++) out[o + j] += xv * W[w + j];
    }
  }
}

/** dW += xᵀ·g, db += Σ g, dx = g·Wᵀ (dx may be null for the first layer). */
function affineBackward(
  g: Float32Array, x: Float32Array, n: number, din: number, W: Float32Array, dout: number,
  dW: Float32Array, db: Float32Array, dx: Float32Array | null,
): void {
  dW.fill(0);
  db.fill(0);
  for (let i = 0; i < n; i++) {
    const go = i * dout;
    for (let j = 0; j < dout; j++) db[j] += g[go + j];
    for (let k = 0; k < din; k++) {
      const xv = x[i * din + k];
      if (xv === 0) continue;
      const w = k * dout;
      for (let j = 0; j < dout; j++) dW[w + j] += xv * g[go + j];
    }
    if (dx) {
      for (let k = 0; k < din; k++) {
        const w = k * dout;
        let s = 0;
        for (let j = 0; j < dout; j++) s += g[go + j] * W[w + j];
        dx[i * din + k] = s;
      }
    }
  }
}

/** Mean softmax cross-entropy of scores (n, c); writes dscores. */
function softmaxLoss(scores: Float32Array, y: Int32Array, n: number, c: number, dscores: Float32Array): number {
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const o = i * c;
    let max = -Infinity;
    for (let j = 0; j < c; j++) max = Math.max(max, scores[o + j]);
    let sum = 0;
    for (let j = 0; j < c; j++) sum += Math.exp(scores[o + j] - max);
    const logSum = Math.log(sum) + max;
    loss += logSum - scores[o + y[i]];
    for (let j = 0; j < c; j++) dscores[o + j] = (Math.exp(scores[o + j] - logSum) - (j === y[i] ? 1 : 0)) / n;
  }
  return loss / n;
}

export interface Parameter {
  value: Float32Array;
  grad: Float32Array;
}

export class Adam {
  private readonly m: Float32Array[];
  private readonly v: Float32Array[];
  private t = 0;
  constructor(private readonly params: Parameter[], private readonly lr = 1e-3, private readonly beta1 = 0.9, private readonly beta2 = 0.999, private readonly eps = 1e-8) {
    this.m = params.map((p) => new Float32Array(p.value.length));
    this.v = params.map((p) => new Float32Array(p.value.length));
  }
  step(): void {
    this.t++;
    const c1 = 1 - this.beta1 ** this.t;
    const c2 = 1 - this.beta2 ** this.t;
    this.params.forEach(({ value, grad }, p) => {
      const m = this.m[p];
      const v = this.v[p];
      for (let i = 0; i < value.length; i++) {
        m[i] = this.beta1 * m[i] + (1 - this.beta1) * grad[i];
        v[i] = this.beta2 * v[i] + (1 - this.beta2) * grad[i] * grad[i];
        value[i] -= (this.lr * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + this.eps);
      }
    });
  }
}

interface Hidden {
  W: Float32Array;
  b: Float32Array;
  dW: Float32Array;
  db: Float32Array;
  bn: BatchNorm | null;
  ln: LayerNorm | null;
}

/** The normalization of each hidden layer. */
export type Norm = "batch" | "layer" | "none";

export interface NetOptions {
  inputDim: number;
  hiddenDims: number[];
  classes: number;
  weightScale: number;
  norm: Norm;
  seed: number;
}

export class FullyConnectedNet {
  readonly params: Parameter[] = [];
  private readonly hidden: Hidden[] = [];
  private readonly last: Omit<Hidden, "bn" | "ln">;
  private readonly dims: number[];
  /** Per batch size: each hidden layer's normalization workspace (null: none) and the activations. */
  private readonly buffers = new Map<number, { workspaces: (BatchNormWorkspace | NormWorkspace | null)[]; acts: Float32Array[]; grads: Float32Array[]; scores: Float32Array }>();

  constructor(private readonly options: NetOptions) {
    const normal = gaussian(rng(options.seed));
    this.dims = [options.inputDim, ...options.hiddenDims, options.classes];
    const layer = (din: number, dout: number) => {
      const W = Float32Array.from({ length: din * dout }, () => options.weightScale * normal());
      const b = new Float32Array(dout);
      const l = { W, b, dW: new Float32Array(din * dout), db: new Float32Array(dout) };
      this.params.push({ value: l.W, grad: l.dW }, { value: l.b, grad: l.db });
      return l;
    };
    options.hiddenDims.forEach((dout, i) => {
      const l = layer(this.dims[i], dout);
      // Batch norm and the ReLU after it in one pass each way (activation: 'relu').
      const bn = options.norm === "batch" ? new BatchNorm(dout, { activation: "relu" }) : null;
      if (bn) this.params.push({ value: bn.gamma, grad: bn.dgamma }, { value: bn.beta, grad: bn.dbeta });
      const ln = options.norm === "layer" ? new LayerNorm(dout) : null;
      if (ln) this.params.push({ value: ln.gamma!, grad: ln.dgamma! }, { value: ln.beta!, grad: ln.dbeta! });
      this.hidden.push({ ...l, bn, ln });
    });
    this.last = layer(this.dims[this.dims.length - 2], options.classes);
  }

  private buffersFor(n: number) {
    let b = this.buffers.get(n);
    if (!b) {
      const workspaces = this.hidden.map((h) => h.bn?.workspace(n) ?? h.ln?.workspace(n) ?? null);
      const acts = this.dims.slice(1, -1).map((d) => new Float32Array(n * d));
      const grads = this.dims.slice(0, -1).map((d) => new Float32Array(n * d));
      b = { workspaces, acts, grads, scores: new Float32Array(n * this.options.classes) };
      this.buffers.set(n, b);
    }
    return b;
  }

  /** Scores (n, classes) of a batch, in train or eval mode. */
  forward(x: Float32Array, n: number, training: boolean): Float32Array {
    const { workspaces, acts, scores } = this.buffersFor(n);
    let input = x;
    this.hidden.forEach((h, i) => {
      const din = this.dims[i];
      const dout = this.dims[i + 1];
      const act = acts[i];
      const ws = workspaces[i];
      if (h.bn && ws) {
        h.bn.train(training);
        affineForward(input, n, din, h.W, h.b, dout, ws.x); // zero-copy into the layer
        act.set(ws.forward()); // max(0, BN(x)), fused
      } else if (ws) {
        affineForward(input, n, din, h.W, h.b, dout, ws.x);
        const out = ws.forward(); // LayerNorm: the same in train and eval mode
        for (let k = 0; k < act.length; k++) act[k] = out[k] > 0 ? out[k] : 0;
      } else {
        affineForward(input, n, din, h.W, h.b, dout, act);
        for (let k = 0; k < act.length; k++) if (act[k] < 0) act[k] = 0;
      }
      input = act;
    });
    affineForward(input, n, this.dims[this.dims.length - 2], this.last.W, this.last.b, this.options.classes, scores);
    return scores;
  }

  /** One training step's loss and gradients (in the Parameter grads). */
  lossAndGradients(x: Float32Array, y: Int32Array, n: number): number {
    const scores = this.forward(x, n, true);
    const { workspaces, acts, grads } = this.buffersFor(n);
    const c = this.options.classes;
    const dscores = new Float32Array(n * c);
    const loss = softmaxLoss(scores, y, n, c, dscores);
    const L = this.hidden.length;
    affineBackward(dscores, acts[L - 1], n, this.dims[L], this.last.W, c, this.last.dW, this.last.db, grads[L]);
    for (let i = L - 1; i >= 0; i--) {
      const h = this.hidden[i];
      const act = acts[i];
      const g = grads[i + 1];
      let dpre: Float32Array;
      const ws = workspaces[i];
      if (h.bn && ws) {
        ws.dout.set(g);
        dpre = ws.backward(); // masked by out > 0 inside; also fills h.bn.dgamma / dbeta
      } else if (ws) {
        for (let k = 0; k < act.length; k++) if (act[k] <= 0) g[k] = 0;
        ws.dout.set(g);
        dpre = ws.backward(); // also fills h.ln.dgamma / dbeta
      } else {
        for (let k = 0; k < act.length; k++) if (act[k] <= 0) g[k] = 0;
        dpre = g;
      }
      affineBackward(dpre, i === 0 ? x : acts[i - 1], n, this.dims[i], h.W, this.dims[i + 1], h.dW, h.db, i === 0 ? null : grads[i]);
    }
    return loss;
  }

  /** Fraction of rows classified correctly, in eval mode, in chunks of `chunk` rows. */
  accuracy(x: Float32Array, y: Int32Array, n: number, chunk = 500): number {
    const c = this.options.classes;
    const dim = this.dims[0];
    let correct = 0;
    for (let start = 0; start < n; start += chunk) {
      const m = Math.min(chunk, n - start);
      const scores = this.forward(x.subarray(start * dim, (start + m) * dim), m, false);
      for (let i = 0; i < m; i++) {
        let best = 0;
        for (let j = 1; j < c; j++) if (scores[i * c + j] > scores[i * c + best]) best = j;
        if (best === y[start + i]) correct++;
      }
    }
    return correct / n;
  }

  dispose(): void {
    for (const b of this.buffers.values()) b.workspaces.forEach((w) => w?.dispose());
    this.buffers.clear();
  }
}
