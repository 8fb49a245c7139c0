"""The CLI's argument types (each a one-line usage error on bad text) and its completion
script."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable

from pydantic import TypeAdapter, ValidationError

from common.models import RunId, Slug, unicode_text


def _checked(adapter: TypeAdapter[str], what: str) -> Callable[[str], str]:
    """An argparse type: the text if `adapter` accepts it, else a one-line usage error."""

    def check(text: str) -> str:
        try:
            return adapter.validate_python(text)
        except ValidationError:
            raise argparse.ArgumentTypeError(f"{text[:80]!r} is not {what}") from None

    return check


run_id_arg = _checked(TypeAdapter(RunId), "a run id (32 hexadecimal characters)")
business_id_arg = _checked(
    TypeAdapter(Slug),
    "a business id (2-63 lower-case letters, digits, '-' or '_', starting with a letter or digit)",
)


def date_arg(text: str) -> dt.date:
    """An argparse type: a date YYYY-MM-DD, else a one-line usage error."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a date YYYY-MM-DD") from None


def text_arg(text: str) -> str:
    """An argparse type for free text that is stored: Unicode (no lone surrogates from
    undecodable bytes), at most 500 characters."""
    try:
        unicode_text(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if len(text) > 500:
        raise argparse.ArgumentTypeError("at most 500 characters")
    return text


def completion_script(root: argparse.ArgumentParser) -> str:
    """A bash completion script for `root`: its commands, then each command's options and
    sub-commands (files where nothing else fits)."""
    words: dict[str, list[str]] = {}
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                words[name] = [o for a in command._actions for o in a.option_strings] + [
                    sub
                    for a in command._actions
                    if isinstance(a, argparse._SubParsersAction)
                    for sub in a.choices
                ]
    cases = "\n".join(
        f'    {name}) COMPREPLY=($(compgen -W "{" ".join(found)}" -- "$cur")) ;;'
        for name, found in words.items()
    )
    return f"""_raptorflow() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "{" ".join(words)} --version --help" -- "$cur"))
    return
  fi
  case "${{COMP_WORDS[1]}}" in
{cases}
  esac
}}
complete -o default -F _raptorflow raptorflow"""
