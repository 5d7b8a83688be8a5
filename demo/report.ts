// The HTML report of `npm start`: self-contained, with inline SVG charts. The browser demo
// draws its charts with the same lineChart.

export interface Series {
  name: string;
  color: string;
  points: [number, number][];
  /** Draw the line dashed. */
  dashed?: boolean;
}

export interface ChartOptions {
  /** Log scale on x (ticks at 1, 2, 5 × 10^k, or at powers of ten over three decades or more). */
  logX?: boolean;
  /** Log scale on y; points ≤ 0 are left out. */
  logY?: boolean;
  /** Only whole-number ticks on x (iterations, epochs). */
  integerX?: boolean;
  /** Domain bounds; otherwise the data's range, widened to round ticks. */
  xMin?: number;
  xMax?: number;
  yMin?: number;
  yMax?: number;
  /** Draw a circle at every point (default: when every series has at most 30 points). */
  markers?: boolean;
}

const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** The smallest round step (1, 2 or 5 × 10^k) at least `rough`. */
export function niceStep(rough: number): number {
  const k = Math.floor(Math.log10(rough));
  const f = rough / 10 ** k;
  const m = f <= 1 + 1e-9 ? 1 : f <= 2 + 1e-9 ? 2 : f <= 5 + 1e-9 ? 5 : 10;
  return Number((m * 10 ** k).toPrecision(12));
}

const plain = (v: number) => v === 0 || (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e5);

/** A tick's label: a plain decimal (0.001 to 99999), else 1e-4 / 2e5 style; no float noise. */
export function formatTick(v: number, exponential = !plain(v)): string {
  if (!exponential || v === 0) return String(Number(v.toPrecision(6)));
  const [mantissa, exponent] = v.toExponential().split("e");
  return `${Number(Number(mantissa).toPrecision(6))}e${exponent.replace("+", "")}`;
}

/** Labels of an axis' ticks, all in one style: 1e-4 … 1e0 when any tick needs an exponent. */
export function formatTicks(ticks: number[]): string[] {
  const exponential = !ticks.every(plain);
  return ticks.map((t) => formatTick(t, exponential));
}

/** Linear ticks over [lo, hi]: a round step, the domain widened to the ticks around it. */
export function linearTicks(lo: number, hi: number, options: { count?: number; integer?: boolean; fixLo?: boolean; fixHi?: boolean } = {}) {
  if (!(hi > lo)) hi = lo + 1;
  let step = niceStep((hi - lo) / (options.count ?? 5));
  if (options.integer) step = Math.max(1, Math.round(step));
  const start = options.fixLo ? lo : Math.floor(lo / step + 1e-9) * step;
  const end = options.fixHi ? hi : Math.ceil(hi / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let t = Math.ceil(start / step - 1e-9) * step; t <= end + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return { lo: start, hi: end, ticks };
}

/** Log ticks over [lo, hi] (both > 0): 1, 2, 5 × 10^k, or powers of ten alone over ≥ 3 decades. */
export function logTicks(lo: number, hi: number, options: { fixLo?: boolean; fixHi?: boolean } = {}) {
  if (!(hi > lo)) hi = lo * 10;
  const k0 = Math.floor(Math.log10(lo) + 1e-9);
  const k1 = Math.ceil(Math.log10(hi) - 1e-9);
  const mantissas = k1 - k0 >= 3 ? [1] : [1, 2, 5];
  const candidates: number[] = [];
  for (let k = k0; k <= k1; k++) for (const m of mantissas) candidates.push(Number((m * 10 ** k).toPrecision(12)));
  const start = options.fixLo ? lo : [...candidates].reverse().find((c) => c <= lo * (1 + 1e-9)) ?? lo;
  const end = options.fixHi ? hi : candidates.find((c) => c >= hi * (1 - 1e-9)) ?? hi;
  const ticks = candidates.filter((c) => c >= start * (1 - 1e-9) && c <= end * (1 + 1e-9));
  return { lo: start, hi: end, ticks };
}

/**
 * A line chart of several series. The legend sits in a band between the title and the plot,
 * so it never covers a curve; an empty chart (no finite points yet) gets a default domain.
 */
export function lineChart(title: string, xLabel: string, yLabel: string, series: Series[], options: ChartOptions = {}): string {
  const width = 560;
  // Legend items flow left to right in rows under the title.
  const plotLeft = 58;
  const plotRight = width - 16;
  const items: { s: Series; x: number; row: number }[] = [];
  let lx = plotLeft;
  let row = 0;
  for (const s of series) {
    const w = 22 + 7 * s.name.length + 16;
    if (lx + w > plotRight && lx > plotLeft) {
      row++;
      lx = plotLeft;
    }
    items.push({ s, x: lx, row });
    lx += w;
  }
  const legendRows = series.length ? row + 1 : 0;
  const m = { left: plotLeft, right: width - plotRight, top: 34 + legendRows * 18, bottom: 44 };
  const height = 300 + m.top;
  const keep = ([x, y]: [number, number]) => Number.isFinite(x) && Number.isFinite(y) && (!options.logX || x > 0) && (!options.logY || y > 0);
  const all = series.flatMap((s) => s.points).filter(keep);
  const range = (values: number[], min: number | undefined, max: number | undefined, log: boolean | undefined) => {
    const lo = min ?? (values.length ? Math.min(...values) : log ? 1 : 0);
    const hi = max ?? (values.length ? Math.max(...values) : log ? 10 : 1);
    return { lo, hi, fixLo: min !== undefined, fixHi: max !== undefined };
  };
  const xr = range(all.map(([x]) => x), options.xMin, options.xMax, options.logX);
  const yr = range(all.map(([, y]) => y), options.yMin, options.yMax, options.logY);
  const X = options.logX ? logTicks(xr.lo, xr.hi, xr) : linearTicks(xr.lo, xr.hi, { ...xr, integer: options.integerX });
  const Y = options.logY ? logTicks(yr.lo, yr.hi, yr) : linearTicks(yr.lo, yr.hi, yr);
  const fx = (x: number) => (options.logX ? Math.log10(x) : x);
  const fy = (y: number) => (options.logY ? Math.log10(y) : y);
  const [x0, x1, y0, y1] = [fx(X.lo), fx(X.hi), fy(Y.lo), fy(Y.hi)];
  const clamp = (v: number, a: number, b: number) => Math.min(Math.max(v, a), b);
  const px = (x: number) => m.left + ((clamp(fx(x), x0, x1) - x0) / (x1 - x0)) * (width - m.left - m.right);
  const py = (y: number) => m.top + (1 - (clamp(fy(y), y0, y1) - y0) / (y1 - y0)) * (height - m.top - m.bottom);
  const r1 = (v: number) => v.toFixed(1);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<text x="${m.left}" y="20" font-size="14" font-weight="bold">${escape(title)}</text>`,
  ];
  const yLabels = formatTicks(Y.ticks);
  Y.ticks.forEach((t, i) => {
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${r1(py(t))}" y2="${r1(py(t))}" stroke="#eee"/>`);
    parts.push(`<text x="${m.left - 6}" y="${r1(py(t) + 4)}" text-anchor="end" fill="#555" class="ytick">${yLabels[i]}</text>`);
  });
  const xLabels = formatTicks(X.ticks);
  X.ticks.forEach((t, i) => {
    parts.push(`<line x1="${r1(px(t))}" x2="${r1(px(t))}" y1="${height - m.bottom}" y2="${height - m.bottom + 4}" stroke="#999"/>`);
    parts.push(`<text x="${r1(px(t))}" y="${height - m.bottom + 16}" text-anchor="middle" fill="#555" class="xtick">${xLabels[i]}</text>`);
  });
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${width - m.left - m.right}" height="${height - m.top - m.bottom}" fill="none" stroke="#ccc"/>`);
  parts.push(`<text x="${(m.left + width - m.right) / 2}" y="${height - 6}" text-anchor="middle">${escape(xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${(m.top + height - m.bottom) / 2}) rotate(-90)" text-anchor="middle">${escape(yLabel)}</text>`);
  const markers = options.markers ?? series.every((s) => s.points.length <= 30);
  for (const s of series) {
    const points = s.points.filter(keep);
    const d = points.map(([x, y], k) => `${k ? "L" : "M"}${r1(px(x))},${r1(py(y))}`).join("");
    if (d) parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ""}/>`);
    if (markers) for (const [x, y] of points) parts.push(`<circle cx="${r1(px(x))}" cy="${r1(py(y))}" r="3" fill="${s.color}"/>`);
  }
  for (const { s, x, row: r } of items) {
    const y = 30 + r * 18;
    parts.push(`<line x1="${x}" x2="${x + 16}" y1="${y + 6}" y2="${y + 6}" stroke="${s.color}" stroke-width="3"${s.dashed ? ' stroke-dasharray="5 3"' : ""}/>`);
    parts.push(`<text x="${x + 22}" y="${y + 10}" class="legend">${escape(s.name)}</text>`);
  }
  parts.push("</svg>");
  return parts.join("\n");
}

/**
 * A grouped bar chart: one group per category, one bar per series (values ≥ 0), on a linear
 * y axis from 0 with round ticks; `reference` draws a dashed line (e.g. 1× for a speed-up).
 */
export function barChart(
  title: string, yLabel: string, categories: string[], series: { name: string; color: string; values: number[] }[],
  /** reference: a dashed line at `value`, named in the legend. */
  options: { reference?: { value: number; label: string }; format?: (v: number) => string } = {},
): string {
  const width = 560;
  const legend = [...series.map((s) => ({ ...s, dashed: false })), ...(options.reference ? [{ name: options.reference.label, color: "#555", dashed: true }] : [])];
  const m = { left: 58, right: 16, top: 34 + 18 * Math.ceil(legend.length / 2), bottom: 44 };
  const height = 300 + m.top;
  const values = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v) && v >= 0);
  const Y = linearTicks(0, Math.max(options.reference?.value ?? 0, ...values, 0) || 1, { fixLo: true });
  const py = (v: number) => m.top + (1 - Math.min(Math.max(v, 0), Y.hi) / Y.hi) * (height - m.top - m.bottom);
  const groupWidth = (width - m.left - m.right) / Math.max(1, categories.length);
  const barWidth = (groupWidth * 0.8) / Math.max(1, series.length);
  const r1 = (v: number) => v.toFixed(1);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<text x="${m.left}" y="20" font-size="14" font-weight="bold">${escape(title)}</text>`,
  ];
  const labels = formatTicks(Y.ticks);
  Y.ticks.forEach((t, i) => {
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${r1(py(t))}" y2="${r1(py(t))}" stroke="#eee"/>`);
    parts.push(`<text x="${m.left - 6}" y="${r1(py(t) + 4)}" text-anchor="end" fill="#555" class="ytick">${labels[i]}</text>`);
  });
  categories.forEach((c, g) => {
    const gx = m.left + g * groupWidth + groupWidth * 0.1;
    series.forEach((s, k) => {
      const v = s.values[g];
      if (!Number.isFinite(v)) return;
      const y = py(v);
      parts.push(`<rect class="bar" x="${r1(gx + k * barWidth)}" y="${r1(y)}" width="${r1(barWidth - 2)}" height="${r1(height - m.bottom - y)}" fill="${s.color}"><title>${escape(`${s.name}, ${c}: ${options.format ? options.format(v) : formatTick(v)}`)}</title></rect>`);
    });
    parts.push(`<text x="${r1(m.left + (g + 0.5) * groupWidth)}" y="${height - m.bottom + 16}" text-anchor="middle" fill="#555" class="xtick">${escape(c)}</text>`);
  });
  if (options.reference) {
    const y = r1(py(options.reference.value));
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${y}" y2="${y}" stroke="#555" stroke-dasharray="4 3"/>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${width - m.left - m.right}" height="${height - m.top - m.bottom}" fill="none" stroke="#ccc"/>`);
  parts.push(`<text transform="translate(14 ${(m.top + height - m.bottom) / 2}) rotate(-90)" text-anchor="middle">${escape(yLabel)}</text>`);
  legend.forEach((s, i) => {
    const x = m.left + (i % 2) * 250;
    const y = 30 + Math.floor(i / 2) * 18;
    if (s.dashed) parts.push(`<line x1="${x}" x2="${x + 12}" y1="${y + 6}" y2="${y + 6}" stroke="${s.color}" stroke-width="2" stroke-dasharray="4 2"/>`);
    else parts.push(`<rect x="${x}" y="${y}" width="12" height="12" fill="${s.color}"/>`);
    parts.push(`<text x="${x + 18}" y="${y + 10}" class="legend">${escape(s.name)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n");
}

export function htmlPage(title: string, sections: { heading: string; body: string }[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font-family:Helvetica,Arial,sans-serif;max-width:1180px;margin:24px auto;padding:0 16px;color:#222}
.charts{display:flex;flex-wrap:wrap;gap:12px}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f4f4f4}</style></head><body>
<h1>${escape(title)}</h1>
${sections.map((s) => `<h2>${escape(s.heading)}</h2>\n${s.body}`).join("\n")}
</body></html>
`;
}

export function table(header: string[], rows: (string | number)[][]): string {
  return `<table><tr>${header.map((h) => `<th>${escape(h)}</th>`).join("")}</tr>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${escape(String(c))}</td>`).join("")}</tr>`)
    .join("")}</table>`;
}
