// A business's past analyses (`GET /v1/businesses/{id}/runs`, newest first): status, cost,
// duration and date, filtered by status, a page at a time; each can be opened or run again.
// The run that is open on the page updates its own row live.

import type { Api } from "./api";
import { byId, duration, h, money } from "./dom";
import { type Run, type RunPage, type RunStatus, type RunSummaryItem, TERMINAL } from "./types";

export const PAGE_SIZE = 10;

export interface HistoryActions {
  open(runId: string): void;
  rerun(runId: string): Promise<void>;
  failed(error: unknown): void;
}

function when(iso: string | null): string {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function label(status: string): string {
  return status.replace("_", " ");
}

export class History {
  private businessId: string | null = null;
  private cursor: string | null = null;
  private loading = 0; // the latest request: an older answer arriving late is dropped

  constructor(
    private readonly api: Api,
    private readonly actions: HistoryActions,
  ) {
    byId<HTMLSelectElement>("history-status").addEventListener("change", () => void this.reload());
    byId("history-more").addEventListener("click", () => void this.load(true));
  }

  /** Show the first page of `businessId`'s runs; resolves with that page (null on failure). */
  show(businessId: string): Promise<RunPage | null> {
    this.businessId = businessId;
    return this.reload();
  }

  /** Load the first page again (a run started or ended). */
  reload(): Promise<RunPage | null> {
    this.cursor = null;
    return this.load(false);
  }

  private async load(more: boolean): Promise<RunPage | null> {
    if (!this.businessId) return null;
    const ticket = ++this.loading;
    const status = byId<HTMLSelectElement>("history-status").value as RunStatus | "";
    const button = byId<HTMLButtonElement>("history-more");
    button.disabled = true;
    let page: RunPage;
    try {
      page = await this.api.runs(this.businessId, { status, cursor: more ? this.cursor : null, limit: PAGE_SIZE });
    } catch (error) {
      if (ticket === this.loading) this.actions.failed(error);
      return null;
    } finally {
      button.disabled = false;
    }
    if (ticket !== this.loading) return null;
    const list = byId("history-list");
    const rows = page.runs.map((run) => this.row(run));
    if (more) list.append(...rows);
    else list.replaceChildren(...rows);
    this.cursor = page.next_cursor;
    button.hidden = page.next_cursor === null;
    byId("history-empty").hidden = list.childElementCount > 0;
    byId("history-empty").textContent = status ? `No analyses ${label(status)}.` : "No analyses yet: start one above.";
    return page;
  }

  private row(run: RunSummaryItem): HTMLElement {
    const rerun = h("button", { type: "button", class: "secondary rerun" }, "Run again");
    rerun.addEventListener("click", async () => {
      rerun.disabled = true;
      try {
        await this.actions.rerun(run.run_id);
      } finally {
        rerun.disabled = false;
      }
    });
    const open = h("button", { type: "button", class: "secondary open" }, "Open");
    open.addEventListener("click", () => this.actions.open(run.run_id));
    const item = h(
      "li",
      { class: "run-row", "data-run-id": run.run_id },
      h("div", { class: "run-what" }, h("b", { class: "run-name" }, run.name || "(unnamed)"), h("span", { class: "muted run-date" }, when(run.created_at))),
      h("span", { class: "status run-status-badge" }),
      h("span", { class: "run-cost" }),
      h("span", { class: "run-duration" }),
      h("div", { class: "run-actions" }, open, rerun),
    );
    this.fill(item, run.status, run.percent, run.cost_usd, run.duration_seconds);
    return item;
  }

  private fill(item: Element, status: RunStatus, percent: number, cost: number, seconds: number | null): void {
    item.setAttribute("data-status", status);
    const badge = item.querySelector(".run-status-badge") as HTMLElement;
    badge.className = `status run-status-badge ${status}`;
    badge.textContent = TERMINAL.has(status) ? label(status) : `${label(status)} · ${percent}%`;
    (item.querySelector(".run-cost") as HTMLElement).textContent = money(cost);
    (item.querySelector(".run-duration") as HTMLElement).textContent = TERMINAL.has(status) ? duration(seconds) : "—";
  }

  /** The open run's new state, into its row if the list shows it. */
  update(run: Run): void {
    const item = byId("history-list").querySelector(`[data-run-id="${CSS.escape(run.run_id)}"]`);
    if (item) this.fill(item, run.status, run.percent, run.cost_nanos / 1e9, run.duration_seconds ?? null);
  }
}
