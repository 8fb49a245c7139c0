// What the budget says, in numbers a marketer can check against the gauge: the refusal of a
// start, the stop of a run, and the gauge itself (`budget_status/{business_id}`, live).
//
// The numbers come from the budget's own message (common/budget/blocks.py `no_room`):
// "daily budget exceeded: $0.210000 needed, $0.002000 of $0.05 left; $0.010000 is held by work
// in flight (business:acme:2026-12-03)". When a message does not have that shape, the sentence
// quotes it, so its numbers still reach the reader.

import { byId, money, usd } from "./dom";
import type { BudgetStatus, Run } from "./types";

export interface BudgetFigures {
  period: "daily" | "monthly";
  needed: number;
  left: number;
  limit: number;
  held: number;
}

const AMOUNT = String.raw`\$([0-9]+(?:\.[0-9]+)?)`;
const FIGURES = new RegExp(
  String.raw`(daily|monthly) budget (?:exceeded|held): ${AMOUNT} needed, ${AMOUNT} of ${AMOUNT} left(?:; ${AMOUNT} is held by work in flight)?`,
);
const PLATFORM = new RegExp(String.raw`platform daily cap reached: ${AMOUNT} needed`);

/** The figures in a budget message, or null when it has none. */
export function budgetFigures(message: string | null | undefined): BudgetFigures | null {
  const found = FIGURES.exec(message ?? "");
  if (!found) return null;
  return {
    period: found[1] as "daily" | "monthly",
    needed: Number(found[2]),
    left: Number(found[3]),
    limit: Number(found[4]),
    held: found[5] === undefined ? 0 : Number(found[5]),
  };
}

function period(figures: BudgetFigures): { when: string; renews: string } {
  return figures.period === "daily"
    ? { when: "today", renews: "The daily budget renews at midnight UTC, or an owner can ask for a higher limit." }
    : { when: "this month", renews: "The monthly budget renews on the 1st (UTC), or an owner can ask for a higher limit." };
}

function heldClause(figures: BudgetFigures): string {
  return figures.held > 0 ? `, and ${money(figures.held)} more is held by analyses still in progress` : "";
}

/** Why a start was refused by the budget, with its numbers (null: not a budget refusal). */
export function refusal(code: string, message: string): string | null {
  const figures = budgetFigures(message);
  if (code === "daily_budget_exceeded" || code === "monthly_budget_exceeded") {
    if (!figures) return `Not started: the ${code.startsWith("daily") ? "daily" : "monthly"} budget cannot pay for this analysis (${message}).`;
    const { when, renews } = period(figures);
    return (
      `Not started: the budget cannot pay for this analysis. It needs ${money(figures.needed)} (what analyses like it cost lately, and at least what its dearest step may cost), ` +
      `but only ${money(figures.left)} of the ${usd(figures.limit, 2)} ${figures.period} limit is left ${when}${heldClause(figures)}. ${renews}`
    );
  }
  if (code === "budget_held") {
    if (!figures) return `Not started yet: money is held by analyses in progress (${message}). Please try again in a minute.`;
    return (
      `Not started yet: ${money(figures.held)} of the ${usd(figures.limit, 2)} ${figures.period} limit is held by analyses still in progress, ` +
      `so only ${money(figures.left)} is free now and this analysis needs ${money(figures.needed)}. ` +
      "What they do not use comes back when they finish: please try again in a minute."
    );
  }
  if (code === "platform_cap_reached") {
    const needed = PLATFORM.exec(message);
    return `RaptorFlow has reached its capacity for today${needed ? ` (this analysis needs up to ${money(Number(needed[1]))})` : ""}. Please try again tomorrow.`;
  }
  return null;
}

function finishedParts(run: Run): number {
  return Object.values(run.phases ?? {}).filter((phase) => phase.status === "completed").length;
}

/** What a run that the budget (or a pause) stopped tells its reader, or null for other ends. */
export function stopped(run: Run): string | null {
  if (run.status !== "budget_exceeded") return null;
  const parts = finishedParts(run);
  const kept =
    parts > 0
      ? ` The ${parts === 1 ? "finished part is" : `${parts} finished parts are`} kept below.`
      : " No part had finished, so there are no results to show.";
  if (run.stop_reason === "platform_paused") return `The analysis stopped because an operator paused RaptorFlow.${kept}`;
  const figures = budgetFigures(run.error);
  const step = run.phase ? `at the ${run.phase} step` : "before its first step";
  if (!figures) return `Budget exceeded: the analysis stopped ${step}${run.error ? ` (${run.error})` : ""}.${kept}`;
  return (
    `Budget exceeded: the analysis stopped ${step}, which needed ${money(figures.needed)}, ` +
    `with ${money(figures.left)} of the ${usd(figures.limit, 2)} ${figures.period} limit left ${period(figures).when}${heldClause(figures)}.${kept}`
  );
}

/** The gauge and the plan's limits from one state of `budget_status/{business_id}`. */
export function renderBudget(status: BudgetStatus): void {
  const limit = status.daily_limit || 1;
  const spent = Math.min(100, (100 * status.today_spent) / limit);
  const reserved = Math.min(100 - spent, (100 * status.today_reserved) / limit);
  byId("gauge-spent").style.width = `${spent}%`;
  byId("gauge-reserved").style.width = `${reserved}%`;
  const gauge = byId("gauge");
  gauge.className = status.warning_level ? `gauge level-${status.warning_level}` : "gauge";
  gauge.setAttribute("data-level", String(status.warning_level ?? 0));
  gauge.setAttribute("data-limit", String(status.daily_limit));
  gauge.title = `${status.percent_used}% of today's budget spent or held`;
  byId("budget-text").textContent =
    `${money(status.today_spent)} spent, ${money(status.today_reserved)} held by analyses in progress, ` +
    `${money(status.today_remaining)} left of ${usd(status.daily_limit, 2)} today (${status.tier} plan)`;
  byId("budget-month").textContent =
    `This month: ${money(status.month_spent)} of ${usd(status.monthly_limit, 2)}, heading for ${usd(status.projected_monthly, 2)}`;
  const warning = byId("budget-warning");
  warning.hidden = !status.warning_level;
  warning.textContent =
    status.warning_level === 100
      ? "Budget warning: the budget is used up — new analyses are blocked until it renews."
      : `Budget warning: ${status.warning_level}% of the budget is used.`;
  byId("plan-tier").textContent = status.tier;
  byId("plan-daily").textContent = `${usd(status.daily_limit, 2)} a day`;
  byId("plan-monthly").textContent = `${usd(status.monthly_limit, 2)} a month`;
}
