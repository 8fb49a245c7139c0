"""The CLI's commands about businesses and the platform: a business's budget, registering
a business and its members, its usage, how model calls ended, and the operator's kill switch."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from common.backend import reports
from common.budget.operator import set_paused
from common.budget.status import get_budget_status, publish
from common.budget.usage import router_feedback, router_report
from common.money import format_usd
from common.platform.errors import AppError, problems
from common.tenants import members
from common.tenants.businesses import Business, business_ref, get_business, save_business
from local.charts import plot_daily_cost
from local.connection import CliError


def budget_command(args: argparse.Namespace) -> int:
    status = get_budget_status(args.business_id)
    if args.json:
        print(json.dumps(status.model_dump(mode="json"), indent=2))
        return 0
    print(f"Business {status.business_id} ({status.tier} tier)")
    print(
        f"  today:  ${status.today_spent:.6f} spent + ${status.today_reserved:.6f} held by "
        f"work in flight; ${status.today_remaining:.6f} left of ${status.daily_limit:.2f} "
        f"({status.percent_used:.0f}% used)"
    )
    month_left = status.month_remaining
    print(
        f"  month:  ${status.month_spent:.6f} spent + ${status.month_reserved:.6f} reserved; "
        f"${month_left:.6f} left of ${status.monthly_limit:.2f} "
        f"(projected ${status.projected_monthly:.2f})"
    )
    if status.warning_level is not None:
        print(f"  warning: {status.warning_level}% of a limit reached")
    if status.platform_paused:
        print(
            f"  PAUSED: RaptorFlow is paused by an operator ({status.paused_reason or 'no reason'})"
            ": every model call is refused until `raptorflow resume`"
        )
    return 0


def _problem(error: ValidationError) -> str:
    field, message = problems(error)[0]
    message = message.removeprefix("Value error, ")
    return message if field == "(top level)" else f"{field}: {message}"


def register_business(
    business_id: str,
    *,
    tier: str | None = None,
    name: str | None = None,
    overrides: dict[str, str | None] | None = None,
) -> tuple[Business, bool]:
    """Create a business, or change only what is given on one that exists (its members and
    other overrides are kept); an override given as None goes back to the tier's value.

    Returns:
        What was saved, and whether the business is new.
    """
    snapshot = business_ref(business_id).get()
    stored = (snapshot.to_dict() or {}) if snapshot.exists else None
    if stored is None and tier is None:
        raise CliError(f"business {business_id} is not registered yet: give its --tier")
    data = {key: value for key, value in (stored or {}).items() if key in Business.model_fields}
    data["business_id"] = business_id
    if tier is not None:
        data["tier"] = tier
    if name is not None:
        data["name"] = name
    kept = dict(data.get("overrides") or {})
    for field, value in (overrides or {}).items():
        if value is None:
            kept.pop(field, None)
        else:
            kept[field] = value
    data["overrides"] = kept
    try:
        business = Business.model_validate(data)
    except ValidationError as error:
        raise CliError(_problem(error)) from error
    saved = save_business(business)
    # Clients listen to the published status: a new limit shows there now, not at the next spend.
    publish(saved.business_id)
    return saved, stored is None


def register_command(args: argparse.Namespace) -> int:
    given = {
        field: getattr(args, field)
        for field in ("daily_limit_usd", "monthly_limit_usd", "max_icps")
        if getattr(args, field) is not None
    }
    overrides = {field: None if value == "tier" else value for field, value in given.items()}
    business, new = register_business(
        args.business_id, tier=args.tier, name=args.name, overrides=overrides
    )
    limits = business.limits
    print(
        f"Business {business.business_id} {'registered' if new else 'updated'} on the "
        f"{business.tier} tier: ${limits.daily_limit_usd}/day, ${limits.monthly_limit_usd}/month,"
        f" up to {limits.max_icps} ICPs, models {', '.join(sorted(limits.model_tiers))}; "
        f"members: {', '.join(business.members) or 'none'}."
    )
    return 0


def members_command(args: argparse.Namespace) -> int:
    business = get_business(args.business_id)
    if args.action == "add":
        try:
            # Adding an owner again keeps them an owner unless they are demoted on purpose.
            owner = args.owner or args.uid in business.owners
            change = members.MemberChange(uid=args.uid, owner=owner)
        except ValidationError as error:
            raise CliError(_problem(error)) from error
        found = members.add_member(business.business_id, change, by=None)
    elif args.action == "remove":
        found = members.remove_member(business.business_id, args.uid, by=None)
    else:
        found = members.members_of(business)
    listed = [f"{uid} (owner)" if uid in found.owners else uid for uid in found.members]
    print(f"Members of {business.business_id}: {', '.join(listed) or 'none'}")
    return 0


def usage_command(args: argparse.Namespace) -> int:
    today = dt.datetime.now(dt.UTC).date()
    try:
        first, last, group_by = reports.parse_range(args.start, args.end, args.by, today)
    except AppError as error:
        raise CliError(f"--{error.field}: {error.message}") from error
    get_business(args.business_id)  # a clear error for a business that is not registered
    found = reports.usage_report(args.business_id, first, last, group_by)
    if args.csv:
        sys.stdout.write(reports.to_csv(found))
    else:
        print(f"Usage of {args.business_id}, {found.from_day} to {found.to_day}, by {group_by}:")
        print(f"  {group_by:<28}{'calls':>8}{'tokens in':>12}{'tokens out':>12}{'cost':>14}")
        for row in [*found.groups, found.total]:
            print(
                f"  {row.group:<28}{row.calls:>8}{row.input_tokens:>12,}{row.output_tokens:>12,}"
                f"{format_usd(row.cost_nanos):>14}"
            )
    if args.plot:
        plot_daily_cost(
            args.plot, args.business_id, reports.daily_cost_by_model(args.business_id, first, last)
        )
        print(f"Plot written to {args.plot}", file=sys.stderr if args.csv else sys.stdout)
    return 0


def router_report_command(args: argparse.Namespace) -> int:
    print(router_report(args.business, args.start, args.end).table())
    return 0


def pause_command(args: argparse.Namespace) -> int:
    set_paused(True, args.reason)
    print(
        f"RaptorFlow is paused for every business: {args.reason}. Runs under way stop at their "
        "next budget check; `raptorflow resume` lifts it."
    )
    return 0


def resume_command(_args: argparse.Namespace) -> int:
    set_paused(False)
    print("RaptorFlow is running again.")
    return 0


def _prompt_log(path: Path) -> dict[str, str]:
    """call key -> prompt, from a JSONL file of {"call_key": ..., "prompt": ...} lines."""
    found: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise CliError(f"--prompts: cannot read {path}: {error.strerror}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            found[str(item["call_key"])] = str(item["prompt"])
        except (ValueError, KeyError, TypeError) as error:
            raise CliError(
                f"--prompts: {path}:{number} must be a JSON object with call_key and prompt"
            ) from error
    return found


def router_feedback_command(args: argparse.Namespace) -> int:
    prompts = _prompt_log(args.prompts) if args.prompts else None
    lines = router_feedback(args.business, args.start, args.end, prompts)
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        with_prompt = sum("prompt" in line for line in lines)
        print(f"{len(lines)} calls ({with_prompt} with a prompt) written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0
