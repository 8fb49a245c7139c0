// The "New analysis" form: filled from a business's last analysis (or an example on request),
// read into the API's business input, and marked where the API found a problem.

import { byId } from "./dom";
import type { BusinessInput } from "./types";
import { formField } from "./validation";

/** An example a new user can start from (a coffee roaster, as in local/samples/). */
export const EXAMPLE: BusinessInput = {
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

function form(): HTMLFormElement {
  return byId<HTMLFormElement>("start-form");
}

function field(name: string): HTMLInputElement | HTMLTextAreaElement {
  return form().elements.namedItem(name) as HTMLInputElement | HTMLTextAreaElement;
}

/** Fill the form with `input`. */
export function fill(input: BusinessInput): void {
  clearInvalid();
  field("name").value = input.name;
  field("industry").value = input.industry;
  field("description").value = input.description;
  field("goals").value = input.goals.join("\n");
  field("competitors").value = input.competitors.join("\n");
  field("target_market").value = input.target_market;
  field("icp_count").value = String(input.icp_count);
  field("website").value = input.website ?? "";
}

/** An empty form for a business called `name`. */
export function clear(name: string): void {
  form().reset();
  clearInvalid();
  field("name").value = name;
}

/** What the form holds, as the API takes it. */
export function read(): BusinessInput {
  const data = new FormData(form());
  const text = (name: string) => String(data.get(name) ?? "").trim();
  const lines = (name: string) =>
    text(name)
      .split("\n")
      .map((line) => line.trim())
      .filter(Boolean);
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

/** Mark the field an API error names (if the form has it) and bring it into view. */
export function markInvalid(apiField: string | null): void {
  clearInvalid();
  if (!apiField) return;
  const element = form().elements.namedItem(formField(apiField));
  if (element instanceof HTMLInputElement || element instanceof HTMLTextAreaElement) {
    element.setAttribute("aria-invalid", "true");
    element.focus();
  }
}

export function clearInvalid(): void {
  form()
    .querySelectorAll("[aria-invalid]")
    .forEach((element) => element.removeAttribute("aria-invalid"));
}
