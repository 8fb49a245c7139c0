// The backend API (functions/api), called with the signed-in user's Firebase ID token.
// Errors come back as {"error": {"code", "message", "field"?}}; `ApiError.explain` turns them
// into sentences a marketer can act on.

import { refusal } from "./budget";
import type { BudgetStatus, BusinessInput, Me, Members, Results, Run, RunPage, RunStarted, RunStatus, UsageReport } from "./types";
import { fieldSentence } from "./validation";

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
    const budget = refusal(this.code, this.message);
    if (budget) return budget;
    switch (this.code) {
      case "unauthenticated":
      case "token_expired":
      case "invalid_token":
        return "Your session has ended. Please sign in again.";
      case "not_a_member":
        // 404 with field uid: removing someone who is not a member; 403: the caller is not one.
        if (this.status === 404) return "That user is not a member of this business.";
        return "Access denied: you are not a member of the business this belongs to.";
      case "not_an_owner":
        return "Access denied: only an owner of this business can do that.";
      case "last_owner":
        return "A business keeps at least one owner: make someone else an owner first.";
      case "run_not_found":
        return "There is no analysis with this id.";
      case "platform_paused":
        return `RaptorFlow is paused for maintenance right now, so nothing can start. Please try again later. (${this.message})`;
      case "feature_limit_exceeded":
        return this.field ? fieldSentence(this.field, this.message) : `Your plan does not allow this: ${this.message}.`;
      case "rate_limited":
        return `You have started several analyses in a short time. Please wait ${this.retryAfter ?? 60} seconds and try again.`;
      case "contention":
      case "busy":
        return `RaptorFlow is busy right now. Please try again in ${this.retryAfter ? `${this.retryAfter} seconds` : "a moment"}.`;
      case "run_final":
        return "This analysis has already ended.";
      case "body_too_large":
        return "This is too much text to send at once: please shorten the longest fields.";
      default:
        if (this.status === 400 && this.field) return fieldSentence(this.field, this.message);
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
  /** One page of the business's runs, newest first (`cursor`: the previous page's next_cursor). */
  runs(businessId: string, options: { status?: RunStatus | ""; cursor?: string | null; limit?: number } = {}): Promise<RunPage> {
    const query = new URLSearchParams();
    if (options.status) query.set("status", options.status);
    if (options.cursor) query.set("cursor", options.cursor);
    if (options.limit) query.set("limit", String(options.limit));
    const suffix = query.toString() ? `?${query}` : "";
    return this.call("GET", `/v1/businesses/${encodeURIComponent(businessId)}/runs${suffix}`);
  }
  usage(businessId: string, from: string, to: string, groupBy: UsageReport["group_by"]): Promise<UsageReport> {
    const query = new URLSearchParams({ from, to, group_by: groupBy });
    return this.call("GET", `/v1/businesses/${encodeURIComponent(businessId)}/usage?${query}`);
  }
  members(businessId: string): Promise<Members> {
    return this.call("GET", `/v1/businesses/${encodeURIComponent(businessId)}/members`);
  }
  /** Add a member, or set whether they are an owner (false demotes an owner). */
  setMember(businessId: string, uid: string, owner: boolean): Promise<Members> {
    return this.call("POST", `/v1/businesses/${encodeURIComponent(businessId)}/members`, { uid, owner });
  }
  removeMember(businessId: string, uid: string): Promise<Members> {
    return this.call("DELETE", `/v1/businesses/${encodeURIComponent(businessId)}/members?${new URLSearchParams({ uid })}`);
  }
}
