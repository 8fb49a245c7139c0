// A business's spend over the last days, stacked by model, from the usage API.
//
// The usage API groups by one field at a time (model, tier, task or day), so the per-day,
// per-model figures come from one request by day and then one by model for each day that
// spent anything (idle days cost no request).

import type { Api } from "./api";
import { stackedChart } from "./chart";
import { byId, money } from "./dom";

export const DAYS = 14;

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

/** The last `count` UTC days up to today, oldest first. */
export function lastDays(count: number, today = new Date()): string[] {
  return Array.from({ length: count }, (_, i) => isoDay(new Date(today.getTime() - (count - 1 - i) * 86_400_000)));
}

export class Spending {
  private shown: string | null = null;

  constructor(
    private readonly api: Api,
    private readonly failed: (error: unknown) => void,
  ) {}

  async show(businessId: string): Promise<void> {
    this.shown = businessId;
    const days = lastDays(DAYS);
    const [first, last] = [days[0], days[days.length - 1]];
    const chart = byId("spend-chart");
    try {
      const byDay = await this.api.usage(businessId, first, last, "day");
      const spent = byDay.groups.filter((group) => group.cost_nanos > 0).map((group) => group.group);
      const perDay = await Promise.all(spent.map((day) => this.api.usage(businessId, day, day, "model")));
      if (this.shown !== businessId) return;
      const values: Record<string, Record<string, number>> = {};
      spent.forEach((day, i) => {
        values[day] = Object.fromEntries(perDay[i].groups.map((group) => [group.group, group.cost_nanos / 1e9]));
      });
      byId("spend-total").textContent = `${money(byDay.total.cost_usd)} over the last ${DAYS} days (${first} to ${last}, UTC), ${byDay.total.calls} model calls.`;
      chart.replaceChildren(stackedChart("Cost per day, by model", days, values, money));
    } catch (error) {
      this.failed(error);
    }
  }
}
