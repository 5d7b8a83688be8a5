// An SVG chart of the results: one panel per operation, shapes along x, one bar per
// implementation, ns/elem on a log scale, the speed of light (SOL) marked per shape.

const COLORS = ["#1b6ef3", "#7aa9f7", "#0f9d58", "#8fd19e", "#9e9e9e", "#f4b400", "#db4437", "#ab47bc"];

const escape = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function chartSvg({ results, ops, shapes, implementations, caption }) {
  const width = 1100;
  const panelHeight = 250;
  const left = 70;
  const right = 20;
  const top = 70;
  const gap = 70;
  const legendHeight = 24 * Math.ceil(implementations.length / 4);
  const height = top + legendHeight + ops.length * (panelHeight + gap);
  const values = results.map((r) => r.nsPerElem).concat(results.map((r) => r.solNsPerElem));
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...values))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...values))));
  const plotWidth = width - left - right;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${left}" y="26" font-size="17" font-weight="bold">batchnorm-wasm: ns per element (lower is better, log scale); ▬ = speed of light (SOL)</text>`);
  out.push(`<text x="${left}" y="46" fill="#555">${escape(caption)}</text>`);
  implementations.forEach((name, i) => {
    const x = left + (i % 4) * 260;
    const y = top + Math.floor(i / 4) * 24;
    out.push(`<rect x="${x}" y="${y - 11}" width="14" height="14" fill="${COLORS[i % COLORS.length]}"/>`);
    out.push(`<text x="${x + 20}" y="${y}">${escape(name)}</text>`);
  });
  ops.forEach((op, p) => {
    const y0 = top + legendHeight + p * (panelHeight + gap) + 20;
    const y = (v) => y0 + panelHeight - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * panelHeight;
    out.push(`<text x="${left}" y="${y0 - 8}" font-size="14" font-weight="bold">${escape(op)}</text>`);
    for (let e = Math.log10(lo); e <= Math.log10(hi) + 1e-9; e++) {
      const v = Math.pow(10, e);
      out.push(`<line x1="${left}" x2="${width - right}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
      out.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" fill="#555">${v >= 1 ? v : v.toPrecision(1)}</text>`);
    }
    const groupWidth = plotWidth / shapes.length;
    const barWidth = (groupWidth - 16) / implementations.length;
    shapes.forEach((shape, s) => {
      const gx = left + s * groupWidth + 8;
      const [dims, layout] = shape.split(" ");
      const cx = gx + (groupWidth - 16) / 2;
      out.push(`<text x="${cx}" y="${y0 + panelHeight + 16}" text-anchor="middle">${escape(dims)}</text>`);
      if (layout) out.push(`<text x="${cx}" y="${y0 + panelHeight + 30}" text-anchor="middle">${escape(layout)}</text>`);
      let sol = null;
      implementations.forEach((name, i) => {
        const r = results.find((q) => q.op === op && q.shape === shape && q.implementation === name);
        if (!r) return;
        sol = r.solNsPerElem;
        const top = y(r.nsPerElem);
        out.push(`<rect x="${gx + i * barWidth}" y="${top}" width="${Math.max(1, barWidth - 1)}" height="${y0 + panelHeight - top}" fill="${COLORS[i % COLORS.length]}"><title>${escape(`${name} ${op} ${shape}: ${r.nsPerElem.toFixed(3)} ns/elem, ${r.xSol.toFixed(2)}× SOL`)}</title></rect>`);
      });
      if (sol) out.push(`<line x1="${gx - 2}" x2="${gx + groupWidth - 14}" y1="${y(sol)}" y2="${y(sol)}" stroke="black" stroke-width="2.5"/>`);
    });
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

// node bench/chart.mjs [latest.json] redraws chart.svg beside it from saved results.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { readFileSync, writeFileSync } = await import("node:fs");
  const path = process.argv[2] ?? new URL("./results/latest.json", import.meta.url).pathname;
  const report = JSON.parse(readFileSync(path, "utf8"));
  const results = report.results.filter((r) => r.op !== "backward-graph");
  const m = report.machine;
  writeFileSync(path.replace(/latest\.json$/, "chart.svg"), chartSvg({
    results,
    ops: ["train", "test", "backward"],
    shapes: [...new Set(results.map((r) => r.shape))],
    implementations: [...new Set(results.map((r) => r.implementation))],
    caption: `${m.cpu}, ${m.cores} cores, Node ${m.node}, one thread, float32, ${m.date.slice(0, 10)}${report.quick ? " (--quick)" : ""}`,
  }));
}
