// The HTML report of `npm start`: self-contained, with inline SVG charts.

export interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** A line chart of several series; logX puts x on a log scale. */
export function lineChart(
  title: string, xLabel: string, yLabel: string, series: Series[],
  options: { logX?: boolean; yMin?: number; yMax?: number; legend?: "top" | "bottom" } = {},
): string {
  const width = 560;
  const height = 320;
  const m = { left: 58, right: 16, top: 34, bottom: 44 };
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  const fx = (x: number) => (options.logX ? Math.log10(x) : x);
  const xs = all.map(([x]) => fx(x));
  const ys = all.map(([, y]) => y);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
  const y0 = options.yMin ?? Math.min(...ys);
  let y1 = options.yMax ?? Math.max(...ys);
  if (y1 === y0) y1 = y0 + 1;
  const px = (x: number) => m.left + ((fx(x) - x0) / (x1 - x0)) * (width - m.left - m.right);
  const py = (y: number) => m.top + (1 - (Math.min(Math.max(y, y0), y1) - y0) / (y1 - y0)) * (height - m.top - m.bottom);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<text x="${m.left}" y="20" font-size="14" font-weight="bold">${escape(title)}</text>`,
    `<rect x="${m.left}" y="${m.top}" width="${width - m.left - m.right}" height="${height - m.top - m.bottom}" fill="none" stroke="#ccc"/>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${py(y)}" y2="${py(y)}" stroke="#eee"/>`);
    parts.push(`<text x="${m.left - 6}" y="${py(y) + 4}" text-anchor="end" fill="#555">${y.toPrecision(3)}</text>`);
  }
  const ticks = options.logX
    ? Array.from({ length: Math.floor(x1) - Math.ceil(x0) + 1 }, (_, i) => 10 ** (Math.ceil(x0) + i))
    : Array.from({ length: 5 }, (_, i) => x0 + ((x1 - x0) * i) / 4);
  for (const t of ticks) {
    parts.push(`<text x="${px(t)}" y="${height - m.bottom + 16}" text-anchor="middle" fill="#555">${options.logX ? `1e${Math.round(Math.log10(t))}` : Math.round(t)}</text>`);
  }
  parts.push(`<text x="${(m.left + width - m.right) / 2}" y="${height - 6}" text-anchor="middle">${escape(xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${(m.top + height - m.bottom) / 2}) rotate(-90)" text-anchor="middle">${escape(yLabel)}</text>`);
  series.forEach((s, i) => {
    const d = s.points.filter(([, y]) => Number.isFinite(y)).map(([x, y], k) => `${k ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join("");
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    if (s.points.length <= 30) for (const [x, y] of s.points) if (Number.isFinite(y)) parts.push(`<circle cx="${px(x)}" cy="${py(y)}" r="3" fill="${s.color}"/>`);
    const ly = options.legend === "bottom" ? height - m.bottom - 10 - (series.length - i) * 18 : m.top + 8 + i * 18;
    parts.push(`<rect x="${width - m.right - 170}" y="${ly}" width="12" height="12" fill="${s.color}"/>`);
    parts.push(`<text x="${width - m.right - 152}" y="${ly + 10}">${escape(s.name)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n");
}

export function htmlPage(title: string, sections: { heading: string; body: string }[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font-family:Helvetica,Arial,sans-serif;max-width:1180px;margin:24px auto;padding:0 16px;color:#222}
.charts{display:flex;flex-wrap:wrap;gap:12px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
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
