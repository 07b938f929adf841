/**
 * A grouped bar chart as SVG text, drawn by hand (no dependencies):
 *
 *   title
 *   y axis with "nice" ticks and grid lines   legend: one swatch per series
 *   x axis: one group per category, one bar per series, value above each bar
 */

export interface BarChart {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  /** Group labels along x (e.g. "iodepth 1"). */
  categories: string[];
  /** One bar per series in each group; values[i] is for categories[i]. */
  series: { name: string; values: number[] }[];
  /** How a value is written above its bar and on the y axis. */
  format?: (v: number) => string;
}

const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"];

export function escapeXml(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

/** Tick step of 1, 2 or 5 x 10^k giving about `count` ticks up to max. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const top = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

const n = (v: number) => (Math.round(v * 10) / 10).toString();

export function renderBarChart(c: BarChart): string {
  const fmt = c.format ?? ((v: number) => String(Math.round(v)));
  const W = 760;
  const H = 460;
  const m = { top: 70, right: 170, bottom: 70, left: 90 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const maxV = Math.max(0, ...c.series.flatMap((s) => s.values.filter(Number.isFinite)));
  const ticks = niceTicks(maxV);
  const top = ticks[ticks.length - 1]!;
  const y = (v: number) => m.top + ph - (top > 0 ? (v / top) * ph : 0);
  const groups = Math.max(1, c.categories.length);
  const gw = pw / groups;
  const nb = Math.max(1, c.series.length);
  const barW = (gw * 0.8) / nb;
  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`  <title>${escapeXml(c.title)}</title>`);
  out.push(`  <rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(
    `  <text x="${W / 2}" y="28" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(c.title)}</text>`,
  );
  if (c.subtitle)
    out.push(
      `  <text x="${W / 2}" y="48" text-anchor="middle" fill="#555555">${escapeXml(c.subtitle)}</text>`,
    );
  // y axis, ticks, grid
  out.push(`  <g class="y-axis">`);
  for (const t of ticks) {
    const ty = n(y(t));
    out.push(`    <line x1="${m.left}" y1="${ty}" x2="${m.left + pw}" y2="${ty}" stroke="#e0e0e0"/>`);
    out.push(`    <line x1="${m.left - 5}" y1="${ty}" x2="${m.left}" y2="${ty}" stroke="#333333"/>`);
    out.push(`    <text x="${m.left - 8}" y="${n(y(t) + 4)}" text-anchor="end">${escapeXml(fmt(t))}</text>`);
  }
  out.push(`    <line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}" stroke="#333333"/>`);
  out.push(
    `    <text transform="translate(${m.left - 62},${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(c.yLabel)}</text>`,
  );
  out.push("  </g>");
  // bars
  out.push(`  <g class="bars">`);
  c.categories.forEach((cat, gi) => {
    const gx = m.left + gi * gw + gw * 0.1;
    c.series.forEach((s, si) => {
      const v = s.values[gi] ?? 0;
      const bx = gx + si * barW;
      const by = y(Number.isFinite(v) ? v : 0);
      const bh = m.top + ph - by;
      out.push(
        `    <rect x="${n(bx)}" y="${n(by)}" width="${n(barW * 0.92)}" height="${n(bh)}" fill="${COLORS[si % COLORS.length]}"><title>${escapeXml(
          `${cat}, ${s.name}: ${fmt(v)}`,
        )}</title></rect>`,
      );
      out.push(
        `    <text x="${n(bx + (barW * 0.92) / 2)}" y="${n(by - 4)}" text-anchor="middle" font-size="10">${escapeXml(fmt(v))}</text>`,
      );
    });
    out.push(
      `    <text x="${n(m.left + gi * gw + gw / 2)}" y="${m.top + ph + 20}" text-anchor="middle">${escapeXml(cat)}</text>`,
    );
  });
  out.push("  </g>");
  // x axis
  out.push(
    `  <line x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}" stroke="#333333"/>`,
  );
  out.push(
    `  <text x="${m.left + pw / 2}" y="${m.top + ph + 48}" text-anchor="middle">${escapeXml(c.xLabel)}</text>`,
  );
  // legend
  out.push(`  <g class="legend">`);
  c.series.forEach((s, si) => {
    const ly = m.top + 10 + si * 22;
    const lx = m.left + pw + 20;
    out.push(`    <rect x="${lx}" y="${ly}" width="14" height="14" fill="${COLORS[si % COLORS.length]}"/>`);
    out.push(`    <text x="${lx + 20}" y="${ly + 11}">${escapeXml(s.name)}</text>`);
  });
  out.push("  </g>");
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
