// RaptorFlow's reference web app: sign in (Firebase Auth), start an analysis through the API,
// follow it live with Firestore listeners (runs/{id} and its events), read the results.

import { initializeApp } from "firebase/app";
import {
  connectAuthEmulator,
  createUserWithEmailAndPassword,
  getAuth,
  onAuthStateChanged,
  signInWithEmailAndPassword,
  signOut,
  type User,
} from "firebase/auth";
import {
  collection,
  connectFirestoreEmulator,
  doc,
  type FirestoreError,
  getFirestore,
  onSnapshot,
  orderBy,
  query,
  type Unsubscribe,
} from "firebase/firestore";

import { Api, ApiError } from "./api";
import { barChart } from "./chart";
import { byId, h, usd } from "./dom";
import { renderResults } from "./results";
import { type BudgetStatus, type BusinessInput, type Config, type Membership, type Run, type RunEvent, TERMINAL } from "./types";

const SAMPLE: BusinessInput = {
  name: "Tidewater Coffee Co.",
  industry: "Specialty coffee (direct-to-consumer subscriptions)",
  description:
    "Tidewater roasts single-origin specialty coffee in small batches in Portland, Maine, and ships it within 48 hours of roasting. Customers subscribe for two bags a month; the company also sells to a handful of local cafes.",
  goals: ["Grow to 5,000 subscribers in 12 months", "Cut monthly churn below 4%"],
  target_market: "Home coffee enthusiasts aged 25-45 in the US Northeast who care about freshness and sourcing",
  competitors: ["Trade Coffee", "Blue Bottle Coffee", "Atlas Coffee Club"],
  icp_count: 3,
  website: "https://tidewater.example",
};

const config: Config = await (await fetch("config.json", { cache: "no-store" })).json();
const firebase = initializeApp(config.firebase);
const auth = getAuth(firebase);
const db = getFirestore(firebase);
if (config.emulators?.auth) connectAuthEmulator(auth, config.emulators.auth, { disableWarnings: true });
if (config.emulators?.firestore) connectFirestoreEmulator(db, config.emulators.firestore.host, config.emulators.firestore.port);
const api = new Api(config.apiUrl, async () => (auth.currentUser ? auth.currentUser.getIdToken() : null));

let businesses: Membership[] = [];
let stopBudget: Unsubscribe | null = null;
let stopRun: Unsubscribe[] = [];
let shownRun: string | null = null;

// --- Messages -----------------------------------------------------------------------------------

function notify(message: string | null, kind: "error" | "info" = "error"): void {
  const notice = byId("notice");
  notice.hidden = !message;
  notice.className = kind === "info" ? "notice info" : "notice";
  notice.textContent = message ?? "";
}

function explain(error: unknown): string {
  if (error instanceof ApiError) return error.explain();
  const code = (error as { code?: string })?.code ?? "";
  if (code === "permission-denied") return "Access denied: you are not a member of the business this belongs to.";
  if (code.startsWith("auth/")) {
    if (["auth/invalid-credential", "auth/wrong-password", "auth/user-not-found", "auth/invalid-login-credentials"].includes(code))
      return "Wrong email or password.";
    if (code === "auth/email-already-in-use") return "An account with this email exists already: sign in instead.";
    if (code === "auth/weak-password") return "Please choose a password of at least 6 characters.";
    return `Sign-in failed (${code}).`;
  }
  return error instanceof Error ? error.message : String(error);
}

// --- Sign-in ------------------------------------------------------------------------------------

byId<HTMLFormElement>("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await signInWithEmailAndPassword(auth, byId<HTMLInputElement>("email").value, byId<HTMLInputElement>("password").value);
  } catch (error) {
    notify(explain(error));
  }
});
byId("sign-up-button").addEventListener("click", async () => {
  try {
    await createUserWithEmailAndPassword(auth, byId<HTMLInputElement>("email").value, byId<HTMLInputElement>("password").value);
  } catch (error) {
    notify(explain(error));
  }
});
byId("sign-out").addEventListener("click", () => void signOut(auth));

onAuthStateChanged(auth, (user) => void (user ? signedIn(user) : signedOut()));

function signedOut(): void {
  stopListening();
  stopBudget?.();
  byId("app").hidden = true;
  byId("sign-out").hidden = true;
  byId("who").textContent = "";
  byId("sign-in").hidden = false;
}

async function signedIn(user: User): Promise<void> {
  notify(null);
  byId("sign-in").hidden = true;
  byId("sign-out").hidden = false;
  byId("who").textContent = user.email ?? user.uid;
  try {
    businesses = (await api.me()).businesses;
  } catch (error) {
    notify(explain(error));
    return;
  }
  const select = byId<HTMLSelectElement>("business");
  select.replaceChildren(...businesses.map((b) => h("option", { value: b.business_id }, `${b.name || b.business_id} (${b.tier})`)));
  byId("app").hidden = false;
  if (businesses.length === 0) {
    notify(`You are not a member of any business yet. Ask an owner to add your user id: ${user.uid}`, "info");
    byId<HTMLButtonElement>("start-button").disabled = true;
  } else {
    byId<HTMLButtonElement>("start-button").disabled = false;
    showBudget(select.value);
  }
  openFromHash();
}

// --- Budget -------------------------------------------------------------------------------------

byId<HTMLSelectElement>("business").addEventListener("change", (event) => showBudget((event.target as HTMLSelectElement).value));

function showBudget(businessId: string): void {
  stopBudget?.();
  // The API refreshes the published status; the listener keeps the gauge live from then on.
  api.budget(businessId).then(renderBudget, (error) => notify(explain(error)));
  stopBudget = onSnapshot(
    doc(db, "budget_status", businessId),
    (snapshot) => snapshot.exists() && renderBudget(snapshot.data() as BudgetStatus),
    (error) => notify(explain(error)),
  );
}

function renderBudget(status: BudgetStatus): void {
  const limit = status.daily_limit || 1;
  const spent = Math.min(100, (100 * status.today_spent) / limit);
  const reserved = Math.min(100 - spent, (100 * status.today_reserved) / limit);
  byId("gauge-spent").style.width = `${spent}%`;
  byId("gauge-reserved").style.width = `${reserved}%`;
  const gauge = byId("gauge");
  gauge.className = status.warning_level ? `gauge level-${status.warning_level}` : "gauge";
  gauge.setAttribute("data-level", String(status.warning_level ?? 0));
  byId("gauge").title = `${status.percent_used}% of today's budget spent or reserved`;
  byId("budget-text").textContent =
    `${usd(status.today_spent)} spent and ${usd(status.today_reserved)} reserved of ${usd(status.daily_limit, 2)} today (${status.tier} plan)`;
  byId("budget-month").textContent = `This month: ${usd(status.month_spent)} of ${usd(status.monthly_limit, 2)}, heading for ${usd(status.projected_monthly, 2)}`;
  const warning = byId("budget-warning");
  warning.hidden = !status.warning_level;
  warning.textContent =
    status.warning_level === 100
      ? "Budget warning: the budget is used up — new analyses are blocked until it renews."
      : `Budget warning: ${status.warning_level}% of the budget is used.`;
}

// --- Starting a run -----------------------------------------------------------------------------

function fillSample(): void {
  const form = byId<HTMLFormElement>("start-form");
  const field = (name: string) => form.elements.namedItem(name) as HTMLInputElement;
  field("name").value = SAMPLE.name;
  field("industry").value = SAMPLE.industry;
  field("description").value = SAMPLE.description;
  field("goals").value = SAMPLE.goals.join("\n");
  field("competitors").value = SAMPLE.competitors.join("\n");
  field("target_market").value = SAMPLE.target_market;
  field("icp_count").value = String(SAMPLE.icp_count);
  field("website").value = SAMPLE.website ?? "";
}
fillSample();

function formInput(form: HTMLFormElement): BusinessInput {
  const data = new FormData(form);
  const text = (name: string) => String(data.get(name) ?? "").trim();
  const lines = (name: string) => text(name).split("\n").map((line) => line.trim()).filter(Boolean);
  return {
    name: text("name"),
    industry: text("industry"),
    description: text("description"),
    goals: lines("goals"),
    target_market: text("target_market"),
    competitors: lines("competitors"),
    icp_count: Number(text("icp_count")),
    website: text("website") || null,
  };
}

byId<HTMLFormElement>("start-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = byId<HTMLButtonElement>("start-button");
  button.disabled = true;
  notify(null);
  try {
    const started = await api.startRun(byId<HTMLSelectElement>("business").value, formInput(event.target as HTMLFormElement));
    location.hash = `run=${started.run_id}`;
  } catch (error) {
    notify(explain(error));
  } finally {
    button.disabled = false;
  }
});

// --- Following a run ----------------------------------------------------------------------------

byId<HTMLFormElement>("open-run-form").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = `run=${byId<HTMLInputElement>("open-run-id").value.trim()}`;
});
window.addEventListener("hashchange", openFromHash);

function openFromHash(): void {
  const runId = new URLSearchParams(location.hash.slice(1)).get("run");
  if (runId && auth.currentUser && runId !== shownRun) void openRun(runId);
}

function stopListening(): void {
  stopRun.forEach((stop) => stop());
  stopRun = [];
  shownRun = null;
}

async function openRun(runId: string): Promise<void> {
  stopListening();
  shownRun = runId;
  for (const id of ["run", "costs", "results"]) byId(id).hidden = true;
  let run: Run;
  try {
    run = await api.run(runId); // the API says why when the run is not yours
  } catch (error) {
    notify(explain(error));
    return;
  }
  notify(null);
  byId("run-id").textContent = runId;
  byId("run").hidden = false;
  byId("run").scrollIntoView({ block: "start" });
  renderRun(run);
  const failed = (error: FirestoreError) => notify(explain(error));
  stopRun.push(
    onSnapshot(doc(db, "runs", runId), (snapshot) => snapshot.exists() && renderRun({ run_id: runId, ...snapshot.data() } as Run), failed),
    onSnapshot(
      query(collection(db, "runs", runId, "events"), orderBy("at")),
      (snapshot) => renderEvents(snapshot.docs.map((d) => ({ id: d.id, ...d.data() }) as RunEvent)),
      failed,
    ),
  );
}

let lastStatus = "";

function renderRun(run: Run): void {
  const progress = byId("progress");
  progress.setAttribute("aria-valuenow", String(run.percent));
  byId("progress-fill").style.width = `${run.percent}%`;
  byId("progress-label").textContent = `${run.percent}%`;
  const status = byId("run-status");
  status.textContent = run.cancel_requested && !TERMINAL.has(run.status) ? "cancelling…" : run.status.replace("_", " ");
  status.className = `status ${run.status}`;
  status.setAttribute("data-status", run.status);
  byId("run-phase").textContent = run.phase ?? "—";
  byId("run-step").textContent = run.step ?? "—";
  byId("run-eta").textContent = TERMINAL.has(run.status) ? "—" : run.eta_seconds === null ? "estimating…" : `about ${run.eta_seconds} s`;
  byId("run-cost").textContent = usd(run.cost_nanos / 1e9, 6);
  byId("run-models").textContent = run.models_used.length ? run.models_used.join(", ") : "—";
  byId("run-warnings").replaceChildren(...run.warnings.map((w) => h("li", { class: "warning" }, `Budget warning: ${w}`)));
  const cancel = byId<HTMLButtonElement>("cancel-button");
  cancel.disabled = TERMINAL.has(run.status) || run.cancel_requested;
  renderCosts(run);
  if (TERMINAL.has(run.status) && lastStatus !== `${run.run_id}:${run.status}`) {
    lastStatus = `${run.run_id}:${run.status}`;
    if (run.status === "budget_exceeded") notify("Budget exceeded: the analysis stopped because the business's budget is used up. Finished parts are kept below.");
    else if (run.status === "failed") notify(`The analysis failed: ${run.error ?? "unknown error"}`);
    void showResults(run.run_id);
  }
}

function renderEvents(events: RunEvent[]): void {
  byId("run-events").replaceChildren(
    ...events.slice(-30).map((e) => h("li", { "data-type": e.type }, `${e.percent}% · ${e.step ?? e.type.replaceAll("_", " ")}`)),
  );
}

function renderCosts(run: Run): void {
  const order = ["research", "positioning", "icps", "strategy", "content", "analytics"];
  const phases = Object.entries(run.phases ?? {})
    .filter(([, p]) => typeof p.cost_nanos === "number")
    .sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
  if (phases.length === 0) return;
  const byModel = new Map<string, number>();
  for (const [, phase] of phases) byModel.set(phase.model ?? "?", (byModel.get(phase.model ?? "?") ?? 0) + (phase.cost_nanos ?? 0) / 1e9);
  const money = (value: number) => usd(value, 6);
  byId("cost-charts").replaceChildren(
    barChart("Cost by phase", phases.map(([name, p]) => [name, (p.cost_nanos ?? 0) / 1e9]), money),
    barChart("Cost by model", [...byModel.entries()], money),
  );
  byId("costs").hidden = false;
}

async function showResults(runId: string): Promise<void> {
  try {
    const results = await api.results(runId);
    if (shownRun !== runId) return;
    const container = byId("results");
    container.replaceChildren(...renderResults(results));
    container.hidden = results.completed.length === 0;
  } catch (error) {
    notify(explain(error));
  }
}

byId("cancel-button").addEventListener("click", async () => {
  if (!shownRun) return;
  byId<HTMLButtonElement>("cancel-button").disabled = true;
  try {
    renderRun(await api.cancel(shownRun));
  } catch (error) {
    notify(explain(error));
  }
});
