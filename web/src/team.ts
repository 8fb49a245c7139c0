// A business's members, for its owners: list, add, remove, make owner (the members API).
// Members are Firebase Auth user ids; each person finds theirs on this page.

import { ApiError, type Api } from "./api";
import { byId, h } from "./dom";
import type { Members, Membership } from "./types";

export interface TeamActions {
  /** The signed-in user's own membership changed (they left, or are no longer an owner). */
  selfChanged(): void;
  failed(error: unknown): void;
  told(message: string): void;
}

export class Team {
  private business: Membership | null = null;

  constructor(
    private readonly api: Api,
    private readonly me: () => string,
    private readonly actions: TeamActions,
  ) {
    byId<HTMLFormElement>("member-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const uid = byId<HTMLInputElement>("member-uid").value.trim();
      const owner = byId<HTMLInputElement>("member-owner").checked;
      void this.change(uid, () => this.api.setMember(this.businessId(), uid, owner), `${uid} is now ${owner ? "an owner" : "a member"}.`).then((done) => {
        if (done) byId<HTMLFormElement>("member-form").reset();
      });
    });
  }

  private businessId(): string {
    if (!this.business) throw new Error("no business is shown");
    return this.business.business_id;
  }

  /** The members of `business` when the user owns it; otherwise who to ask. */
  async show(business: Membership): Promise<void> {
    this.business = business;
    byId("my-uid").textContent = this.me();
    byId("members-owner").hidden = !business.owner;
    byId("members-not-owner").hidden = business.owner;
    byId("members-list").replaceChildren();
    if (!business.owner) return;
    try {
      this.render(await this.api.members(business.business_id));
    } catch (error) {
      this.actions.failed(error);
    }
  }

  private render(members: Members): void {
    if (members.business_id !== this.business?.business_id) return; // switched meanwhile
    const owners = new Set(members.owners);
    const sole = owners.size === 1;
    byId("members-list").replaceChildren(
      ...[...members.members]
        .sort((a, b) => Number(owners.has(b)) - Number(owners.has(a)) || a.localeCompare(b))
        .map((uid) => this.row(uid, owners.has(uid), sole && owners.has(uid))),
    );
  }

  private row(uid: string, owner: boolean, soleOwner: boolean): HTMLElement {
    const you = uid === this.me();
    const role = h("button", { type: "button", class: "secondary member-role" }, owner ? "Make member" : "Make owner");
    role.addEventListener("click", () => void this.change(uid, () => this.api.setMember(this.businessId(), uid, !owner), `${uid} is now ${owner ? "a member" : "an owner"}.`));
    const remove = h("button", { type: "button", class: "danger member-remove" }, "Remove");
    remove.addEventListener("click", () => void this.change(uid, () => this.api.removeMember(this.businessId(), uid), `${uid} was removed.`));
    if (soleOwner) {
      // The API refuses it too (last_owner); here the buttons say so before anyone tries.
      for (const button of [role, remove]) {
        button.disabled = true;
        button.title = "A business keeps at least one owner: make someone else an owner first.";
      }
    }
    return h(
      "li",
      { class: "member", "data-uid": uid, "data-owner": String(owner) },
      h("span", { class: "member-id mono" }, uid),
      you ? h("span", { class: "muted" }, "(you)") : null,
      owner ? h("span", { class: "badge" }, "Owner") : null,
      h("span", { class: "member-actions" }, role, remove),
    );
  }

  private async change(uid: string, request: () => Promise<Members>, done: string): Promise<boolean> {
    byId("member-uid").removeAttribute("aria-invalid");
    try {
      const members = await request();
      this.render(members);
      this.actions.told(done);
      if (uid === this.me()) this.actions.selfChanged();
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.status === 400 && error.field === "uid") byId("member-uid").setAttribute("aria-invalid", "true");
      this.actions.failed(error);
      return false;
    }
  }
}
