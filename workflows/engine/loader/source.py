"""YAML (or JSON) source with line numbers, and the literal data it holds."""

from __future__ import annotations

from typing import Any

import yaml


class Located(dict[str, Any]):
    """A mapping from the YAML source that remembers its line."""

    line = 0


_BREAKS = "\0\r\n\x85\u2028\u2029"
_PAIRS = {"{": "}", "[": "]", "(": ")"}


class YamlLoader(yaml.SafeLoader):
    """Safe YAML without timestamps (Workflows keeps `2024-01-01` a string), recording lines.

    In flow collections an unquoted `${...}` is one scalar, as Workflows reads it: the sys.log
    page's own example is `args: [${myVar}, "ERROR"]`, where plain YAML would stop the scalar at
    the `{`.
    """

    def scan_plain(self) -> yaml.ScalarToken:
        length = self._expression_length() if self.flow_level else 0
        if not length:
            return super().scan_plain()
        start = self.get_mark()
        text = self.prefix(length)
        self.forward(length)
        self.allow_simple_key = False
        return yaml.ScalarToken(text, True, start, self.get_mark())

    def _expression_length(self) -> int:
        """The length of a one-line `${...}` starting here that ends a flow scalar, else 0."""
        if self.peek() != "$" or self.peek(1) != "{":
            return 0
        closers, quote, i = ["}"], "", 2
        while closers:
            ch = self.peek(i)
            if ch in _BREAKS:
                return 0
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch in _PAIRS:
                closers.append(_PAIRS[ch])
            elif ch == closers[-1]:
                closers.pop()
            elif ch in "}])":
                return 0
            i += 1
        after = self.peek(i)
        ends = (
            after in _BREAKS
            or after in " \t,]}"
            or (after == ":" and self.peek(i + 1) in _BREAKS + " \t,[]{}")
        )
        return i if ends else 0


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: YamlLoader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    out = Located()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key).lower() if isinstance(key, bool) else str(key)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def plain(value: Any) -> Any:
    """Strip the line bookkeeping from literal data."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def line_of(value: Any, default: int) -> int:
    return value.line if isinstance(value, Located) else default


def load_yaml(text: str) -> Any:
    """Parse YAML safely, keeping lines; raises yaml.YAMLError."""
    return yaml.load(text, Loader=YamlLoader)  # a SafeLoader subclass
