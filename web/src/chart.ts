// A horizontal bar chart in SVG: one bar per label, scaled to the largest value.

const SVG = "http://www.w3.org/2000/svg";

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  return element;
}

export function barChart(title: string, entries: [string, number][], format: (value: number) => string): HTMLElement {
  const figure = document.createElement("figure");
  figure.className = "chart";
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  const rowHeight = 26;
  const labelWidth = 150;
  const barWidth = 260;
  const valueWidth = 90;
  const max = Math.max(...entries.map(([, value]) => value), 1e-12);
  const chart = svg("svg", {
    width: labelWidth + barWidth + valueWidth,
    height: Math.max(entries.length, 1) * rowHeight + 4,
    role: "img",
    "aria-label": title,
  });
  entries.forEach(([label, value], index) => {
    const y = index * rowHeight + 4;
    const name = svg("text", { x: 0, y: y + 15 });
    name.textContent = label.length > 22 ? `${label.slice(0, 21)}…` : label;
    const bar = svg("rect", { class: "bar-rect", x: labelWidth, y, height: rowHeight - 8, width: Math.max((barWidth * value) / max, 1) });
    const tip = svg("title", {});
    tip.textContent = `${label}: ${format(value)}`;
    bar.append(tip);
    const amount = svg("text", { x: labelWidth + barWidth + 6, y: y + 15 });
    amount.textContent = format(value);
    chart.append(name, bar, amount);
  });
  figure.append(caption, chart);
  return figure;
}
