"""Variable scopes as Workflows checks them at deploy time, before anything runs.

From the Variables, Iteration and Parallel steps pages
(https://cloud.google.com/workflows/docs/reference/syntax/variables,
https://cloud.google.com/workflows/docs/reference/syntax/iteration,
https://cloud.google.com/workflows/docs/samples/workflows-parallel-shared-variables):

- a variable created inside a `for` loop or an `except` block belongs to it; using it outside is
  a deploy-time error;
- a loop's `value` and `index` must not be used outside the loop, and nested loops may not
  reuse them;
- a parallel branch may assign a variable of the enclosing scope only if `shared` lists it.

The compiler walks steps in text order, so "defined" means defined earlier in the text (or in an
enclosing scope); a name never defined anywhere is left to the run (a KeyError then).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Frame:
    kind: str  # "subworkflow", "for", "except", "parallel branch", "parallel for"
    step: str | None
    names: set[str] = field(default_factory=set)
    loop_variables: frozenset[str] = frozenset()
    shared: frozenset[str] | None = None  # set for the frames of parallel branches

    def where(self) -> str:
        if self.kind == "parallel branch":
            return f"parallel branch '{self.step}'"
        return f"{self.kind} of step '{self.step}'"


class VariableScopes:
    """The scopes of one subworkflow while its steps are compiled; methods return an error
    message, or None when the use is allowed."""

    def __init__(self, params: set[str]) -> None:
        self._frames = [_Frame("subworkflow", None, set(params))]
        # Names that existed only in a scope that has ended, with where they lived.
        self._gone: dict[str, _Frame] = {}

    def visible(self, name: str) -> bool:
        """Whether `name` is defined here or in an enclosing scope."""
        return any(name in frame.names for frame in self._frames)

    def push(
        self,
        kind: str,
        step: str,
        loop_variables: tuple[str, ...] = (),
        shared: frozenset[str] | None = None,
    ) -> str | None:
        """Enter a loop, except block or branch; `loop_variables` are defined in it."""
        for variable in loop_variables:
            for frame in self._frames:
                if variable in frame.loop_variables:
                    return f"loop variable '{variable}' is already used by the enclosing loop"
            if self.visible(variable):
                return f"loop variable '{variable}' must not be a variable outside the loop"
        names = set(loop_variables)
        self._frames.append(_Frame(kind, step, names, frozenset(loop_variables), shared))
        return None

    def declare(self, name: str) -> None:
        """Define `name` in the innermost scope (an except block's `as`)."""
        self._frames[-1].names.add(name)

    def pop(self) -> None:
        """Leave the innermost scope: its variables are gone."""
        frame = self._frames.pop()
        for name in frame.names:
            if not self.visible(name):
                self._gone.setdefault(name, frame)

    def read(self, name: str) -> str | None:
        """An expression reads `name`."""
        if self.visible(name) or name not in self._gone:
            return None
        return f"variable '{name}' exists only inside the {self._gone[name].where()}"

    def write(self, name: str, whole: bool) -> str | None:
        """An assignment or `result` writes `name` (`whole` False for `name.key` or `name[i]`)."""
        holder = next((i for i, f in enumerate(self._frames) if name in f.names), None)
        if holder is None:
            if not whole:
                return self.read(name)
            gone = self._gone.get(name)
            if gone is not None and name in gone.loop_variables:
                return f"loop variable '{name}' is used outside the {gone.where()}"
            self._gone.pop(name, None)
            self._frames[-1].names.add(name)
            return None
        for frame in self._frames[holder + 1 :]:
            if frame.shared is not None and name not in frame.shared:
                return (
                    f"the {frame.where()} assigns '{name}', a variable of the enclosing scope "
                    "that is not listed in 'shared'"
                )
        return None
