// The analysis laid out for a marketer, one section per result, in the order they build on.

import { h, list, table, usd } from "./dom";
import type { Results, Run } from "./types";

function section(name: string, title: string, ...body: (Node | string | null)[]): HTMLElement {
  return h("section", { "data-section": name }, h("h2", null, title), ...body);
}

const SEVEN_PS: [keyof NonNullable<Results["strategy"]>["marketing_7ps"], string][] = [
  ["product", "Product"],
  ["price", "Price"],
  ["place", "Place"],
  ["promotion", "Promotion"],
  ["people", "People"],
  ["process", "Process"],
  ["physical_evidence", "Physical evidence"],
];

export function renderResults(results: Results): HTMLElement[] {
  const sections: HTMLElement[] = [];
  const { research, positioning, icps, strategy, content, analytics } = results;

  if (research) {
    const swot = research.situation_analysis;
    sections.push(
      section(
        "research",
        "Market research",
        h("p", null, swot.summary),
        h(
          "div",
          { class: "cards" },
          h("div", { class: "tile" }, h("h3", null, "Strengths"), list(swot.strengths)),
          h("div", { class: "tile" }, h("h3", null, "Weaknesses"), list(swot.weaknesses)),
          h("div", { class: "tile" }, h("h3", null, "Opportunities"), list(swot.opportunities)),
          h("div", { class: "tile" }, h("h3", null, "Threats"), list(swot.threats)),
        ),
        h("h3", null, "Competitor ladder"),
        table(
          ["#", "Competitor", "Position held", "Weakness to exploit"],
          research.competitor_ladder.map((r) => [r.rank, r.competitor, r.position_held, r.weakness_to_exploit]),
        ),
      ),
      section(
        "evidence",
        "Evidence",
        h("p", { class: "muted" }, "What the research rests on, and how sure it is of each point."),
        table(
          ["Claim", "Source", "Confidence"],
          research.evidence.map((e) => [e.claim, e.source, h("span", { class: `confidence ${e.confidence}` }, e.confidence)]),
        ),
      ),
      section(
        "sostac",
        "SOSTAC plan",
        h(
          "div",
          { class: "cards" },
          h("div", { class: "tile" }, h("h3", null, "Situation"), h("p", null, research.sostac.situation)),
          h("div", { class: "tile" }, h("h3", null, "Objectives"), list(research.sostac.objectives)),
          h("div", { class: "tile" }, h("h3", null, "Strategy"), h("p", null, research.sostac.strategy)),
          h("div", { class: "tile" }, h("h3", null, "Tactics"), list(research.sostac.tactics)),
          h("div", { class: "tile" }, h("h3", null, "Action"), list(research.sostac.action)),
          h("div", { class: "tile" }, h("h3", null, "Control"), list(research.sostac.control)),
        ),
      ),
    );
  }

  if (positioning) {
    const chosen = positioning.selected.option_number;
    sections.push(
      section(
        "positioning",
        "Positioning",
        h(
          "div",
          { class: "cards" },
          positioning.options.map((option, index) =>
            h(
              "div",
              { class: index + 1 === chosen ? "tile chosen" : "tile", "data-option": String(index + 1) },
              h("h3", null, `${index + 1}. ${option.name}`, index + 1 === chosen ? h("span", { class: "badge" }, "Chosen") : null),
              h("p", null, option.statement),
              h("p", { class: "muted" }, `For ${option.target_segment} · stands out by ${option.key_differentiator}`),
              h("div", null, "Risks:", list(option.risks)),
            ),
          ),
        ),
        h("h3", null, "The chosen positioning"),
        h("p", { class: "chosen-statement" }, positioning.selected.statement),
        h("p", { class: "muted" }, `Why: ${positioning.selected.rationale}`),
      ),
    );
  }

  if (icps) {
    sections.push(
      section(
        "icps",
        "Ideal customer profiles",
        h(
          "div",
          { class: "cards" },
          icps.icps.map((icp) =>
            h(
              "div",
              { class: "tile icp" },
              h("h3", null, icp.name),
              h("p", { class: "muted" }, icp.segment),
              h("p", null, icp.description),
              h("div", null, h("b", null, "Pains"), list(icp.pains)),
              h("div", null, h("b", null, "Goals"), list(icp.goals)),
              h("div", null, h("b", null, "Buying triggers"), list(icp.buying_triggers)),
              h("div", null, h("b", null, "Objections"), list(icp.objections)),
              h("div", null, h("b", null, "Channels"), list(icp.channels)),
              h("p", null, h("b", null, "Key message: "), icp.key_message),
            ),
          ),
        ),
      ),
    );
  }

  if (strategy) {
    sections.push(
      section(
        "7ps",
        "Marketing mix (7Ps)",
        table(["", ""], SEVEN_PS.map(([key, label]) => [h("b", null, label), strategy.marketing_7ps[key]])),
      ),
      section(
        "north-star",
        "North-star metrics",
        table(
          ["Metric", "Definition", "Target", "Measured"],
          strategy.north_star_metrics.map((m) => [m.name, m.definition, m.target, m.measurement_frequency]),
        ),
      ),
    );
  }

  if (content) {
    sections.push(
      section(
        "calendar",
        "12-week content calendar",
        table(
          ["Week", "Theme", "Content"],
          content.calendar.map((week) => [
            week.week,
            week.theme,
            list(week.items.map((i) => `${i.channel} · ${i.format}: “${i.title}” for ${i.icp} → ${i.call_to_action}`)),
          ]),
        ),
      ),
      section(
        "briefs",
        "Creative briefs",
        h(
          "div",
          { class: "cards" },
          content.asset_templates.map((brief) =>
            h(
              "div",
              { class: "tile" },
              h("h3", null, brief.name),
              h("p", null, h("b", null, "Objective: "), brief.objective),
              h("p", null, h("b", null, "Audience: "), brief.audience),
              h("p", null, h("b", null, "Key message: "), brief.key_message),
              h("p", { class: "muted" }, `${brief.format} · tone: ${brief.tone}`),
              h("div", null, h("b", null, "Must include"), list(brief.mandatories)),
            ),
          ),
        ),
      ),
    );
  }

  if (analytics) {
    const clv = analytics.clv;
    sections.push(
      section(
        "amec",
        "Measurement (AMEC framework)",
        table(["Stage", "Objective", "Metrics"], analytics.amec.map((s) => [s.stage, s.objective, list(s.metrics)])),
      ),
      section(
        "clv",
        "Customer lifetime value",
        h(
          "div",
          { class: "figures" },
          h("div", { class: "figure" }, h("b", null, usd(clv.clv_usd, 2)), "lifetime value"),
          h("div", { class: "figure" }, h("b", null, usd(clv.max_acquisition_cost_usd, 2)), "max. acquisition cost"),
          h("div", { class: "figure" }, h("b", null, usd(clv.average_order_value_usd, 2)), "average order"),
          h("div", { class: "figure" }, h("b", null, clv.purchases_per_year.toFixed(1)), "purchases a year"),
          h("div", { class: "figure" }, h("b", null, `${Math.round(clv.gross_margin * 100)}%`), "gross margin"),
          h("div", { class: "figure" }, h("b", null, `${Math.round(clv.annual_retention_rate * 100)}%`), "kept each year"),
        ),
        h("div", null, "Assumptions:", list(clv.assumptions)),
      ),
      section(
        "route-back",
        "When to revisit the plan",
        table(
          ["If", "falls below", "revisit", "and"],
          analytics.route_back.map((t) => [t.metric, t.threshold, t.route_to_phase, t.action]),
        ),
      ),
    );
  }
  return sections;
}

const PHASES = ["research", "positioning", "icps", "strategy", "content", "analytics"];

/** How the analysis was made: each phase's sub-tasks, the model that answered each, the ones
 * whose answers failed their checks and moved up a model tier (and why), and what each cost. */
export function renderMaking(run: Run): HTMLElement | null {
  const rows = PHASES.flatMap((phase) =>
    (run.phases?.[phase]?.sub_tasks ?? []).map((step) => [
      phase,
      step.title,
      step.model,
      step.escalations.length
        ? list(step.escalations.map((e) => `${e.from} → ${e.to}: ${e.reason}`))
        : "—",
      usd(step.cost_nanos / 1e9, 6),
    ]),
  );
  if (rows.length === 0) return null;
  const escalated = PHASES.reduce((n, phase) => n + (run.phases?.[phase]?.escalations ?? 0), 0);
  const unresolved = PHASES.flatMap((phase) => run.phases?.[phase]?.unresolved ?? []);
  return section(
    "making",
    "How this analysis was made",
    h(
      "p",
      { class: "muted" },
      `Each step asked the cheapest model likely to do it well; ${escalated} answer${escalated === 1 ? "" : "s"} ` +
        "failed a check of sense and went to a stronger model.",
    ),
    unresolved.length ? h("div", { class: "warning" }, "Still failing a check:", list(unresolved)) : null,
    table(["Phase", "Step", "Model", "Moved up", "Cost"], rows),
  );
}
