// RaptorFlow's reference web app: sign in (Firebase Auth), start an analysis through the API,
// follow it live with Firestore listeners (runs/{id} and its events), read the results, find
// past analyses, and, for owners, manage members and see spending.

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
import { renderBudget, stopped } from "./budget";
import { barChart } from "./chart";
import { byId, h, usd } from "./dom";
import * as form from "./form";
import { History } from "./history";
import { renderMaking, renderResults } from "./results";
import { Spending } from "./spending";
import { Team } from "./team";
import { type BudgetStatus, type Config, type Escalation, type Membership, type Run, type RunEvent, TERMINAL } from "./types";

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
    if (code === "auth/invalid-email") return "Please enter a valid email address.";
    return "Sign-in failed. Please try again.";
  }
  return error instanceof Error ? error.message : String(error);
}

const failed = (error: unknown) => notify(explain(error));

const runs = new History(api, {
  open: (runId) => {
    location.hash = `run=${runId}`;
  },
  rerun: (runId) => rerun(runId),
  failed,
});
const spending = new Spending(api, failed);
const team = new Team(api, () => auth.currentUser?.uid ?? "", {
  selfChanged: () => void loadBusinesses(),
  failed,
  told: (message) => notify(message, "info"),
});

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
  closeRun();
  stopBudget?.();
  stopBudget = null;
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
  await loadBusinesses();
  openFromHash();
}

/** The businesses the user belongs to, into the picker; a user with none sees how to join one. */
async function loadBusinesses(): Promise<void> {
  const user = auth.currentUser;
  if (!user) return;
  try {
    businesses = (await api.me()).businesses;
  } catch (error) {
    notify(explain(error));
    return;
  }
  const select = byId<HTMLSelectElement>("business");
  const previous = select.value;
  select.replaceChildren(...businesses.map((b) => h("option", { value: b.business_id }, `${b.name || b.business_id} (${b.tier})`)));
  if (businesses.some((b) => b.business_id === previous)) select.value = previous;
  byId("app").hidden = false;
  const none = businesses.length === 0;
  byId("onboarding").hidden = !none;
  byId("workspace").hidden = none;
  byId("onboarding-uid").textContent = user.uid;
  if (none) {
    // Nothing to start against: no form, no example to run on someone else's business.
    closeRun();
    stopBudget?.();
    stopBudget = null;
    return;
  }
  void showBusiness(select.value);
}

function business(businessId: string): Membership | undefined {
  return businesses.find((b) => b.business_id === businessId);
}

byId<HTMLSelectElement>("business").addEventListener("change", (event) => void showBusiness((event.target as HTMLSelectElement).value));

// Whether the user changed the form since the business was picked: a late answer never
// overwrites what they typed or the example they asked for.
let formTouched = false;
byId("start-form").addEventListener("input", () => {
  formTouched = true;
});

/** Everything about one business: its budget (live), its history, the form, its team. */
async function showBusiness(businessId: string): Promise<void> {
  showBudget(businessId);
  const membership = business(businessId);
  if (membership) void team.show(membership);
  if (!byId("view-business").hidden) void spending.show(businessId);
  formTouched = false;
  form.clear(membership?.name ?? "");
  void runs.show(businessId);
  // The form starts from the business's last analysis, for a change and a new run.
  try {
    const last = (await api.runs(businessId, { limit: 1 })).runs[0];
    if (!last) return;
    const run = await api.run(last.run_id);
    if (byId<HTMLSelectElement>("business").value === businessId && !formTouched) form.fill(run.input);
  } catch {
    // The form stays as it is: nothing to start from.
  }
}

byId("example-button").addEventListener("click", () => {
  formTouched = true;
  form.fill(form.EXAMPLE);
});

// --- Views --------------------------------------------------------------------------------------

function selectTab(name: "analyses" | "business"): void {
  for (const tab of ["analyses", "business"]) {
    byId(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    byId(`view-${tab}`).hidden = tab !== name;
  }
  if (name === "business") void spending.show(byId<HTMLSelectElement>("business").value);
}
byId("tab-analyses").addEventListener("click", () => selectTab("analyses"));
byId("tab-business").addEventListener("click", () => selectTab("business"));

// --- Budget -------------------------------------------------------------------------------------

function showBudget(businessId: string): void {
  stopBudget?.();
  // The published status is rewritten by every change to the business's budget, a new limit
  // included; the API computes it for a business that has not published one yet.
  api.budget(businessId).then(renderBudget, failed);
  stopBudget = onSnapshot(
    doc(db, "budget_status", businessId),
    (snapshot) => snapshot.exists() && renderBudget(snapshot.data() as BudgetStatus),
    failed,
  );
}

// --- Starting a run -----------------------------------------------------------------------------

async function start(businessId: string, input: ReturnType<typeof form.read>): Promise<void> {
  notify(null);
  try {
    const started = await api.startRun(businessId, input);
    location.hash = `run=${started.run_id}`;
    void runs.reload();
  } catch (error) {
    notify(explain(error));
    throw error;
  }
}

byId<HTMLFormElement>("start-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = byId<HTMLButtonElement>("start-button");
  button.disabled = true;
  form.clearInvalid();
  try {
    await start(byId<HTMLSelectElement>("business").value, form.read());
  } catch (error) {
    if (error instanceof ApiError && error.field) form.markInvalid(error.field);
  } finally {
    button.disabled = false;
  }
});

/** Start a new run with the input of `runId` (as it was, on the same business). */
async function rerun(runId: string): Promise<void> {
  try {
    const { business_id: businessId, ...input } = (await api.run(runId)).input;
    await start(businessId, input);
  } catch (error) {
    notify(explain(error));
  }
}

// --- Following a run ----------------------------------------------------------------------------

byId<HTMLFormElement>("open-run-form").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = `run=${byId<HTMLInputElement>("open-run-id").value.trim()}`;
});
window.addEventListener("hashchange", openFromHash);
byId("close-run").addEventListener("click", () => {
  // Out of the address too, without a hashchange: a reload then shows no run.
  window.history.replaceState(null, "", location.pathname + location.search);
  closeRun();
});

function openFromHash(): void {
  const runId = new URLSearchParams(location.hash.slice(1)).get("run");
  if (!auth.currentUser) return;
  if (!runId) closeRun();
  else if (runId !== shownRun) void openRun(runId);
}

function stopListening(): void {
  stopRun.forEach((stop) => stop());
  stopRun = [];
  shownRun = null;
}

function closeRun(): void {
  stopListening();
  for (const id of ["run", "costs", "results"]) byId(id).hidden = true;
}

async function openRun(runId: string): Promise<void> {
  stopListening();
  shownRun = runId;
  for (const id of ["run", "costs", "results"]) byId(id).hidden = true;
  selectTab("analyses");
  let run: Run;
  try {
    run = await api.run(runId); // the API says why when the run is not yours
  } catch (error) {
    notify(explain(error));
    return;
  }
  if (shownRun !== runId) return;
  if (run.business_id !== byId<HTMLSelectElement>("business").value && business(run.business_id)) {
    byId<HTMLSelectElement>("business").value = run.business_id;
    void showBusiness(run.business_id);
  }
  notify(null);
  byId("run-id").textContent = runId;
  byId("run").hidden = false;
  byId("run").scrollIntoView({ block: "start" });
  renderRun(run);
  const failedListening = (error: FirestoreError) => notify(explain(error));
  stopRun.push(
    onSnapshot(doc(db, "runs", runId), (snapshot) => snapshot.exists() && renderRun({ run_id: runId, ...snapshot.data() } as Run), failedListening),
    onSnapshot(
      query(collection(db, "runs", runId, "events"), orderBy("at")),
      (snapshot) => renderEvents(snapshot.docs.map((d) => ({ id: d.id, ...d.data() }) as RunEvent)),
      failedListening,
    ),
  );
}

let lastStatus = "";

let latestRun: Run | null = null;

function renderRun(run: Run): void {
  if (run.run_id !== shownRun) return;
  latestRun = run;
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
  runs.update(run);
  if (TERMINAL.has(run.status) && lastStatus !== `${run.run_id}:${run.status}`) {
    lastStatus = `${run.run_id}:${run.status}`;
    const why = stopped(run);
    if (why) notify(why);
    else if (run.status === "failed") notify(`The analysis failed: ${run.error ?? "unknown error"}`);
    void showResults(run.run_id);
    void runs.reload();
  }
}

function renderEvents(events: RunEvent[]): void {
  byId("run-events").replaceChildren(...events.slice(-40).map(activity));
}

/** One line of the activity list: a step, and when a sub-task's answers had to move up a
 * model tier (or still fail a check) a mark saying so, with why. */
function activity(e: RunEvent): HTMLLIElement {
  // A sub-task's event lists its escalations; a phase's end counts them (a number).
  const escalations = Array.isArray(e.data.escalations) ? (e.data.escalations as Escalation[]) : [];
  const unresolved = Array.isArray(e.data.unresolved) ? (e.data.unresolved as string[]) : [];
  const step = e.step ?? e.type.replaceAll("_", " ");
  // The step's own words already say "(escalated … : why)"; the mark says it at a glance.
  const line = escalations.length ? step.replace(/ \(escalated .*$/, "") : step;
  return h(
    "li",
    { "data-type": e.type, ...(escalations.length ? { "data-escalated": String(escalations.length) } : {}) },
    `${e.percent}% · ${line}`,
    escalations.map((x) =>
      h("span", { class: "badge escalated", title: x.reason }, `escalated ${x.from_tier} → ${x.to_tier}: ${x.reason}`),
    ),
    unresolved.length ? h("span", { class: "badge unresolved", title: unresolved.join("; ") }, `still failing: ${unresolved[0]}`) : null,
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
    const making = latestRun?.run_id === runId ? renderMaking(latestRun) : null;
    container.replaceChildren(...renderResults(results), ...(making ? [making] : []));
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
