"""YAML (or JSON) source with line numbers, and the literal data it holds."""

from __future__ import annotations

from typing import Any

import yaml


class Located(dict[str, Any]):
    """A mapping from the YAML source that remembers its line."""

    line = 0


class YamlLoader(yaml.SafeLoader):
    """Safe YAML without timestamps (Workflows keeps `2024-01-01` a string), recording lines."""


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
