// The API's field errors (pydantic's wording, e.g. "goals: List should have at most 10 items
// after validation, not 11") as sentences about the form a marketer filled in.

interface FormField {
  label: string; // as the form shows it
  item?: [string, string]; // a list field's item, singular and plural
}

const FIELDS: Record<string, FormField> = {
  name: { label: "Business name" },
  industry: { label: "Industry" },
  description: { label: "What the business does" },
  goals: { label: "Goals", item: ["goal", "goals"] },
  competitors: { label: "Competitors", item: ["competitor", "competitors"] },
  target_market: { label: "Target market" },
  icp_count: { label: "Customer profiles (ICPs)" },
  website: { label: "Website" },
  uid: { label: "User id" },
};

/** The form field an API error names: "goals.3" is in "goals". */
export function formField(field: string): string {
  return field.split(".")[0];
}

function count(n: number, [one, many]: [string, string]): string {
  return n === 1 ? `one ${one}` : `${n} ${many}`;
}

/** A plain sentence for an API error on `field`; never pydantic's own words. */
export function fieldSentence(field: string, message: string): string {
  const [name, index] = field.split(".");
  const known = FIELDS[name];
  const item = known?.item;
  const position = index !== undefined && /^\d+$/.test(index) && item ? Number(index) + 1 : null;
  const label = position && item ? `${item[0][0].toUpperCase()}${item[0].slice(1)} ${position}` : (known?.label ?? name.replaceAll("_", " "));
  const number = (pattern: RegExp) => Number(pattern.exec(message)?.[1]);

  if (/Field required|Input should be a valid string|should have at least 1 character/i.test(message)) return `Please fill in “${label}”.`;
  if (/should have at least \d+ characters?/i.test(message))
    return `“${label}” needs at least ${number(/at least (\d+)/)} characters.`;
  if (/should have at most \d+ characters?/i.test(message))
    return `“${label}” can be at most ${number(/at most (\d+)/)} characters long.`;
  if (item && /List should have at least/i.test(message)) return `Please give at least ${count(number(/at least (\d+)/), item)} (one per line).`;
  if (item && /List should have at most/i.test(message)) {
    const given = /not (\d+)/.exec(message);
    return `Please give at most ${count(number(/at most (\d+)/), item)}${given ? ` (there are ${given[1]})` : ""}.`;
  }
  if (/greater than or equal to/i.test(message)) return `“${label}” must be at least ${number(/equal to (-?\d+)/)}.`;
  if (/less than or equal to/i.test(message)) return `“${label}” can be at most ${number(/equal to (-?\d+)/)}.`;
  if (/valid integer/i.test(message)) return `“${label}” must be a whole number.`;
  if (name === "website") return "The website must be a full address starting with http:// or https://, without spaces.";
  if (name === "uid") return "A user id has only letters, digits and . _ : - in it.";
  if (/ICPs/.test(message)) {
    const allowed = /at most (\d+) ICPs/.exec(message)?.[1];
    const tier = /the (\w+) tier/.exec(message)?.[1];
    if (allowed) return `Your ${tier ?? ""} plan allows at most ${allowed} customer profiles (ICPs) per analysis.`.replace("  ", " ");
  }
  return `Please check “${label}”: it was not accepted as entered.`;
}
