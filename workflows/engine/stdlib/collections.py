"""The list and map modules."""

from __future__ import annotations

from typing import Any

from ..errors import TYPE_ERROR, raised
from .registry import expect, function


@function("list.concat", "objs", "val")
def _list_concat(objs: Any, val: Any) -> list[Any]:
    expect("list.concat", "objs", objs, "list")
    return [*objs, val]


@function("list.prepend", "objs", "val")
def _list_prepend(objs: Any, val: Any) -> list[Any]:
    expect("list.prepend", "objs", objs, "list")
    return [val, *objs]


@function("map.get", "map", "keys")
def _map_get(mapping: Any, keys: Any) -> Any:
    # Null, not an error, when the input or any value on the way is not a map or lacks the key
    # (https://cloud.google.com/workflows/docs/reference/stdlib/map/get).
    path = [keys] if isinstance(keys, str) else keys
    if not isinstance(path, list) or not all(isinstance(k, str) for k in path):
        raise raised(TYPE_ERROR, "map.get: 'keys' must be a string or a list of strings")
    value = mapping
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


@function("map.merge", "first", "second")
def _map_merge(first: Any, second: Any) -> dict[str, Any]:
    expect("map.merge", "first", first, "map")
    expect("map.merge", "second", second, "map")
    return {**first, **second}


def _merge_nested(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    out = dict(first)
    for key, value in second.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_nested(out[key], value)
        else:
            out[key] = value
    return out


@function("map.merge_nested", "first", "second")
def _map_merge_nested(first: Any, second: Any) -> dict[str, Any]:
    expect("map.merge_nested", "first", first, "map")
    expect("map.merge_nested", "second", second, "map")
    return _merge_nested(first, second)


@function("map.delete", "map", "key")
def _map_delete(mapping: Any, key: Any) -> dict[str, Any]:
    expect("map.delete", "map", mapping, "map")
    expect("map.delete", "key", key, "string")
    return {k: v for k, v in mapping.items() if k != key}
