// Charts in SVG, drawn in their own coordinates (a viewBox) and scaled to the width of their
// container by CSS, so that they fit a phone as well as a desktop.

const SVG = "http://www.w3.org/2000/svg";
// Distinct and readable on white, in the order models are first seen.
const PALETTE = ["#2454d6", "#1a8a4a", "#b86e00", "#8e44ad", "#c0392b", "#16a0a0", "#6b7a8f", "#d35400"];

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  return element;
}

function text(x: number, y: number, content: string, anchor = "start"): SVGTextElement {
  const element = svg("text", { x, y, "text-anchor": anchor });
  element.textContent = content;
  return element;
}

function figure(title: string, chart: SVGSVGElement, ...after: HTMLElement[]): HTMLElement {
  const element = document.createElement("figure");
  element.className = "chart";
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  element.append(caption, chart, ...after);
  return element;
}

/** One horizontal bar per label, scaled to the largest value. */
export function barChart(title: string, entries: [string, number][], format: (value: number) => string): HTMLElement {
  const rowHeight = 26;
  const labelWidth = 150;
  const barWidth = 240;
  const valueWidth = 90;
  const width = labelWidth + barWidth + valueWidth;
  const height = Math.max(entries.length, 1) * rowHeight + 4;
  const max = Math.max(...entries.map(([, value]) => value), 1e-12);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  entries.forEach(([label, value], index) => {
    const y = index * rowHeight + 4;
    const bar = svg("rect", { class: "bar-rect", x: labelWidth, y, height: rowHeight - 8, width: Math.max((barWidth * value) / max, 1) });
    const tip = svg("title", {});
    tip.textContent = `${label}: ${format(value)}`;
    bar.append(tip);
    chart.append(text(0, y + 15, label.length > 20 ? `${label.slice(0, 19)}…` : label), bar, text(labelWidth + barWidth + 6, y + 15, format(value)));
  });
  return figure(title, chart);
}

/** One column per day, stacked by series (e.g. cost per model), with a legend. `days` are
 * YYYY-MM-DD in order; `values[day][series]` may miss any series. */
export function stackedChart(
  title: string,
  days: string[],
  values: Record<string, Record<string, number>>,
  format: (value: number) => string,
): HTMLElement {
  const series = [...new Set(days.flatMap((day) => Object.keys(values[day] ?? {})))].sort();
  const colour = new Map(series.map((name, i) => [name, PALETTE[i % PALETTE.length]]));
  const totals = days.map((day) => Object.values(values[day] ?? {}).reduce((a, b) => a + b, 0));
  const max = Math.max(...totals, 1e-12);
  const [left, top, plotHeight, column] = [64, 10, 160, 28];
  const width = left + days.length * column + 8;
  const height = top + plotHeight + 34;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  for (const fraction of [0, 0.5, 1]) {
    const y = top + plotHeight * (1 - fraction);
    chart.append(svg("line", { x1: left - 4, x2: width, y1: y, y2: y, class: "grid" }), text(left - 8, y + 4, format(max * fraction), "end"));
  }
  days.forEach((day, i) => {
    let y = top + plotHeight;
    const x = left + i * column + 4;
    for (const name of series) {
      const value = values[day]?.[name] ?? 0;
      if (value <= 0) continue;
      const h = (plotHeight * value) / max;
      y -= h;
      const rect = svg("rect", { x, y, width: column - 8, height: Math.max(h, 0.5), fill: colour.get(name) ?? "#999", "data-day": day, "data-series": name });
      const tip = svg("title", {});
      tip.textContent = `${day} · ${name}: ${format(value)}`;
      rect.append(tip);
      chart.append(rect);
    }
    // A date under every other column keeps the labels apart on a phone.
    if ((days.length - 1 - i) % 2 === 0 || days.length < 8) chart.append(text(x + (column - 8) / 2, top + plotHeight + 16, day.slice(5), "middle"));
  });
  const legend = document.createElement("ul");
  legend.className = "legend";
  for (const name of series) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour.get(name) ?? "#999";
    item.append(swatch, name);
    legend.append(item);
  }
  return figure(title, chart, legend);
}
