// A deterministic classification problem hard enough for depth and initialization to
// matter: interleaved spiral arms in 2-D, embedded by a random linear map into `dims`
// dimensions, with noise in every dimension.

/** mulberry32: a small seeded generator, so every run with the same seed is identical. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
}

export function gaussian(uniform: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

export interface Split {
  x: Float32Array; // (n, dims) row-major
  y: Int32Array; // class of each row
  n: number;
}

export interface Dataset {
  train: Split;
  val: Split;
  dims: number;
  classes: number;
}

export function spirals(options: { seed: number; classes: number; perClass: number; dims: number; valFraction: number }): Dataset {
  const { seed, classes, perClass, dims, valFraction } = options;
  const uniform = rng(seed);
  const normal = gaussian(uniform);
  // Random embedding of the plane, plus a little feature offset so inputs are not centred.
  const embed = Float64Array.from({ length: 2 * dims }, () => normal() / Math.sqrt(2));
  const offset = Float64Array.from({ length: dims }, () => 0.5 * normal());
  const total = classes * perClass;
  const x = new Float32Array(total * dims);
  const y = new Int32Array(total);
  for (let c = 0, i = 0; c < classes; c++) {
    for (let k = 0; k < perClass; k++, i++) {
      const r = 0.1 + (0.9 * k) / perClass;
      const theta = (2 * Math.PI * c) / classes + 3.5 * r + 0.18 * normal();
      const px = r * Math.cos(theta);
      const py = r * Math.sin(theta);
      for (let j = 0; j < dims; j++) {
        x[i * dims + j] = embed[j] * px + embed[dims + j] * py + offset[j] + 0.03 * normal();
      }
      y[i] = c;
    }
  }
  // Shuffle, then split.
  const order = Array.from({ length: total }, (_, i) => i);
  for (let i = total - 1; i > 0; i--) {
    const j = Math.floor(uniform() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const nVal = Math.round(total * valFraction);
  const take = (indices: number[]): Split => {
    const sx = new Float32Array(indices.length * dims);
    const sy = new Int32Array(indices.length);
    indices.forEach((src, dst) => {
      sx.set(x.subarray(src * dims, (src + 1) * dims), dst * dims);
      sy[dst] = y[src];
    });
    return { x: sx, y: sy, n: indices.length };
  };
  return { train: take(order.slice(nVal)), val: take(order.slice(0, nVal)), dims, classes };
}
