// The shapes the API and Firestore hold (common/models.py, common/runs/documents.py, common/budget/status.py).

export interface Config {
  firebase: { apiKey: string; projectId: string; authDomain?: string; appId?: string };
  apiUrl: string;
  emulators?: { auth?: string; firestore?: { host: string; port: number } };
}

export interface Membership { business_id: string; name: string; tier: string; owner: boolean }
export interface Me { uid: string; email: string | null; businesses: Membership[] }

/** One model call moving up a tier because its answers failed their checks. */
export interface Escalation { from: string; to: string; from_tier: string; to_tier: string; reason: string }

/** A phase's sub-task as its phase recorded it (common/analysis/work.py: Done.summary). */
export interface SubTaskSummary {
  key: string; title: string; model: string; tier: string; escalations: Escalation[]; cost_nanos: number;
}

export interface PhaseSummary {
  model?: string; provider?: string; cost_nanos?: number; duration_ms?: number;
  input_tokens?: number; output_tokens?: number; status?: string;
  models?: string[]; escalations?: number; unresolved?: string[]; sub_tasks?: SubTaskSummary[];
}

export type RunStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled" | "budget_exceeded";
export const TERMINAL: ReadonlySet<string> = new Set(["succeeded", "failed", "cancelled", "budget_exceeded"]);

export interface Run {
  run_id: string; business_id: string; tier: string; status: RunStatus; percent: number;
  phase: string | null; step: string | null; eta_seconds: number | null; cost_nanos: number;
  models_used: string[]; warnings: string[]; cancel_requested: boolean; error: string | null;
  stop_reason: string | null; phases: Record<string, PhaseSummary>; duration_seconds?: number | null;
  input: BusinessInput & { business_id: string };
}

/** One row of `GET /v1/businesses/{id}/runs` (the run-history contract). */
export interface RunSummaryItem {
  run_id: string; business_id: string; name: string; status: RunStatus; percent: number;
  phase: string | null; step: string | null; created_at: string | null; finished_at: string | null;
  duration_seconds: number | null; cost_usd: number; stop_reason: string | null; error: string | null;
  models_used: string[];
}
export interface RunPage { runs: RunSummaryItem[]; next_cursor: string | null }

export interface Members { business_id: string; members: string[]; owners: string[] }

export interface UsageGroup { group: string; calls: number; input_tokens: number; output_tokens: number; cost_nanos: number; cost_usd: number }
export interface UsageReport {
  business_id: string; from_day: string; to_day: string; group_by: "model" | "tier" | "task" | "day";
  groups: UsageGroup[]; total: UsageGroup;
}

export interface RunEvent { id: string; type: string; phase: string | null; step: string | null; percent: number; data: Record<string, unknown> }

export interface RunStarted {
  run_id: string; business_id: string; status: string;
  listen: { run: string; events: string; phases: string; budget_status: string };
}

export interface BudgetStatus {
  business_id: string; tier: string; daily_limit: number; today_spent: number; today_reserved: number;
  today_remaining: number; percent_used: number; warning_level: number | null; month_spent: number;
  monthly_limit: number; month_remaining: number; projected_monthly: number;
}

export interface BusinessInput {
  name: string; industry: string; description: string; goals: string[]; target_market: string;
  competitors: string[]; icp_count: number; website?: string | null;
}

// --- Phase outputs ----------------------------------------------------------------------------

export interface ResearchOutput {
  situation_analysis: { summary: string; strengths: string[]; weaknesses: string[]; opportunities: string[]; threats: string[] };
  competitor_ladder: { rank: number; competitor: string; position_held: string; weakness_to_exploit: string }[];
  evidence: { claim: string; source: string; confidence: string }[];
  sostac: { situation: string; objectives: string[]; strategy: string; tactics: string[]; action: string[]; control: string[] };
}
export interface PositioningOutput {
  options: { name: string; statement: string; target_segment: string; key_differentiator: string; risks: string[] }[];
  selected: { option_number: number; statement: string; rationale: string };
}
export interface Icp {
  name: string; segment: string; description: string; pains: string[]; goals: string[];
  buying_triggers: string[]; objections: string[]; channels: string[]; key_message: string;
}
export interface StrategyOutput {
  marketing_7ps: Record<"product" | "price" | "place" | "promotion" | "people" | "process" | "physical_evidence", string>;
  north_star_metrics: { name: string; definition: string; target: string; measurement_frequency: string }[];
}
export interface ContentOutput {
  calendar: { week: number; theme: string; items: { channel: string; format: string; title: string; icp: string; call_to_action: string }[] }[];
  asset_templates: { name: string; objective: string; audience: string; key_message: string; format: string; tone: string; mandatories: string[] }[];
}
export interface AnalyticsOutput {
  amec: { stage: string; objective: string; metrics: string[] }[];
  clv: {
    average_order_value_usd: number; purchases_per_year: number; gross_margin: number; annual_retention_rate: number;
    clv_usd: number; max_acquisition_cost_usd: number; assumptions: string[];
  };
  route_back: { metric: string; threshold: string; route_to_phase: string; action: string }[];
}
export interface Results {
  run_id: string; status: string; completed: string[];
  research: ResearchOutput | null; positioning: PositioningOutput | null; icps: { icps: Icp[] } | null;
  strategy: StrategyOutput | null; content: ContentOutput | null; analytics: AnalyticsOutput | null;
}
