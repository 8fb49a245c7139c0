"""Filter semantics written from Vertex AI Vector Search's "Filter vector matches" page.

The page's rules, and the cases below that check each:

1. "Queries express an AND logical operator across namespaces and an OR logical operator within
   each namespace": {color: red, blue}, {shape: square, circle} matches (red || blue) &&
   (square || circle).
2. "A query that specifies {color: red} matches all red objects of any kind, with no restriction
   on shape"; an object with no color omits the namespace, so it is not red.
3. Denylist: "When a query denylists a token, matches are excluded for any datapoint that has the
   denylisted token."
4. "If a query namespace has only denylisted tokens, all points not explicitly denylisted match,
   in exactly the same way that an empty namespace matches with all points."
5. Numeric restricts: the query gives namespace, a value and an op among LESS, LESS_EQUAL, EQUAL,
   GREATER_EQUAL, GREATER (and the API's NOT_EQUAL); "with LESS_EQUAL, a datapoint matches if its
   value is less than or equal to the value used in the query". A datapoint without the numeric
   namespace has no value to compare, so it does not match.

Shared by the Firestore index's tests (the conditions it can express) and the Vertex
implementation's protocol tests.
"""

from __future__ import annotations

from typing import Any

# id -> metadata (each gets a distinct vector in the tests)
DATAPOINTS: dict[str, dict[str, Any]] = {
    "red-square": {"color": "red", "shape": "square", "price": 10, "length": 0.5},
    "blue-circle": {"color": "blue", "shape": "circle", "price": 100, "length": 0.2},
    "orange-square": {"color": "orange", "shape": "square", "price": 50},
    "redblue-square": {"color": ["red", "blue"], "shape": "square", "price": 20, "length": 0.3},
    "red-triangle": {"color": "red", "shape": "triangle", "price": 5.5},
    "colorless-circle": {"shape": "circle"},
    "bare": {},
}

ALL = set(DATAPOINTS)

# (rule, filter, the ids that must match)
CASES: list[tuple[str, dict[str, Any] | None, set[str]]] = [
    ("no filter", None, ALL),
    ("2: one token", {"color": "red"}, {"red-square", "redblue-square", "red-triangle"}),
    (
        "2: missing namespace never allowed",
        {"color": ["red", "blue", "orange"]},
        ALL - {"colorless-circle", "bare"},
    ),
    ("2: unknown token", {"color": "green"}, set()),
    (
        "1: OR within, AND across",
        {"color": ["red", "blue"], "shape": ["square", "circle"]},
        {"red-square", "blue-circle", "redblue-square"},
    ),
    ("1: AND across", {"color": "red", "shape": "triangle"}, {"red-triangle"}),
    (
        "3: deny excludes a datapoint that also has an allowed token",
        {"color": {"allow": ["red"], "deny": ["blue"]}},
        {"red-square", "red-triangle"},
    ),
    (
        "4: deny-only matches every point without the token, namespace or not",
        {"color": {"deny": ["blue"]}},
        {"red-square", "orange-square", "red-triangle", "colorless-circle", "bare"},
    ),
    (
        "3+1: deny in one namespace AND allow in another",
        {"color": {"deny": ["red", "blue"]}, "shape": "square"},
        {"orange-square"},
    ),
    ("5: LESS_EQUAL", {"price": {"<=": 20}}, {"red-square", "redblue-square", "red-triangle"}),
    ("5: LESS", {"price": {"<": 20}}, {"red-square", "red-triangle"}),
    ("5: EQUAL", {"price": 50}, {"orange-square"}),
    ("5: EQUAL on a float", {"price": {"==": 5.5}}, {"red-triangle"}),
    ("5: GREATER_EQUAL", {"price": {">=": 50}}, {"blue-circle", "orange-square"}),
    ("5: GREATER", {"price": {">": 50}}, {"blue-circle"}),
    (
        "5: NOT_EQUAL skips points without the namespace",
        {"price": {"!=": 50}},
        {"red-square", "blue-circle", "redblue-square", "red-triangle"},
    ),
    (
        "5: a range is two restricts, ANDed",
        {"price": {">=": 10, "<": 100}},
        {"red-square", "orange-square", "redblue-square"},
    ),
    (
        "5+1: numeric AND token",
        {"color": "red", "price": {">": 5.5}},
        {"red-square", "redblue-square"},
    ),
    (
        "5: the page's example, price LESS 20 and length GREATER_EQUAL 0.3",
        {"price": {"<": 20}, "length": {">=": 0.3}},
        {"red-square"},
    ),
    ("5: nobody has the numeric namespace", {"weight": {"<": 1}}, set()),
]
