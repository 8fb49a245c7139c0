// The backend API (functions/api), called with the signed-in user's Firebase ID token.
// Errors come back as {"error": {"code", "message", "field"?}}; `ApiError.explain` turns them
// into sentences a marketer can act on.

import type { BudgetStatus, BusinessInput, Me, Results, Run, RunStarted } from "./types";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | null = null,
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }

  explain(): string {
    switch (this.code) {
      case "unauthenticated":
      case "token_expired":
      case "invalid_token":
        return "Your session has ended. Please sign in again.";
      case "not_a_member":
        return "Access denied: you are not a member of the business this belongs to.";
      case "not_an_owner":
        return "Access denied: only an owner of this business can do that.";
      case "run_not_found":
        return "There is no analysis with this id.";
      case "daily_budget_exceeded":
        return "Budget exceeded: today's budget for this business is used up, so the analysis was not started. It renews at midnight UTC, or an owner can raise the limit.";
      case "monthly_budget_exceeded":
        return "Budget exceeded: this month's budget for this business is used up, so the analysis was not started.";
      case "platform_cap_reached":
        return "RaptorFlow has reached its capacity for today. Please try again tomorrow.";
      case "platform_paused":
        return `RaptorFlow is paused for maintenance right now, so nothing can start. Please try again later. (${this.message})`;
      case "feature_limit_exceeded":
        return `Your plan does not allow this: ${this.message}.`;
      case "rate_limited":
        return `You have started several analyses in a short time. Please wait ${this.retryAfter ?? 60} seconds and try again.`;
      case "run_final":
        return "This analysis has already ended.";
      default:
        if (this.status === 400 && this.field) return `Please check “${this.field}”: ${this.message}`;
        if (this.status >= 500) return "Something went wrong on our side. Please try again in a moment.";
        return this.message;
    }
  }
}

export class Api {
  constructor(
    private readonly base: string,
    private readonly idToken: () => Promise<string | null>,
  ) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const token = await this.idToken();
    const headers: Record<string, string> = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response: Response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, "unreachable", "The RaptorFlow service cannot be reached. Check your connection and try again.");
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = answer?.error ?? {};
      const retry = Number(response.headers.get("Retry-After"));
      throw new ApiError(
        response.status,
        error.code ?? "error",
        error.message ?? response.statusText,
        error.field ?? null,
        Number.isFinite(retry) && retry > 0 ? retry : null,
      );
    }
    return answer as T;
  }

  me(): Promise<Me> {
    return this.call("GET", "/v1/me");
  }
  startRun(businessId: string, input: BusinessInput): Promise<RunStarted> {
    return this.call("POST", `/v1/businesses/${encodeURIComponent(businessId)}/runs`, input);
  }
  run(runId: string): Promise<Run> {
    return this.call("GET", `/v1/runs/${encodeURIComponent(runId)}`);
  }
  results(runId: string): Promise<Results> {
    return this.call("GET", `/v1/runs/${encodeURIComponent(runId)}/results`);
  }
  cancel(runId: string): Promise<Run> {
    return this.call("POST", `/v1/runs/${encodeURIComponent(runId)}:cancel`);
  }
  budget(businessId: string): Promise<BudgetStatus> {
    return this.call("GET", `/v1/businesses/${encodeURIComponent(businessId)}/budget`);
  }
}
