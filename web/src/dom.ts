// A tiny element builder: text always goes in as textContent, never as HTML.

type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> | null = null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) element.setAttribute(name, value);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element as T;
}

export function list(items: string[], className = "tight"): HTMLUListElement {
  return h("ul", { class: className }, items.map((item) => h("li", null, item)));
}

/** A table that, on a narrow screen, shows each row as a card (its cells labelled by their
 * column's header through `data-label`, see styles.css) instead of overflowing the page. */
export function table(headers: string[], rows: (Child | Child[])[][]): HTMLTableElement {
  return h(
    "table",
    { class: "stacking" },
    h("thead", null, h("tr", null, headers.map((name) => h("th", null, name)))),
    h("tbody", null, rows.map((row) => h("tr", null, row.map((cell, i) => h("td", headers[i] ? { "data-label": headers[i] } : null, cell))))),
  );
}

export function usd(amount: number, digits = 4): string {
  return `$${amount.toFixed(digits)}`;
}

/** An amount as a reader compares it: cents from a dollar up, four decimals below. */
export function money(amount: number): string {
  return usd(amount, Math.abs(amount) >= 1 ? 2 : 4);
}

/** A duration in words: "42 s", "3 min 5 s", "1 h 2 min". */
export function duration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
