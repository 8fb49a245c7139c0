"""The Workflows standard library functions that run inside expressions (and as `call:` targets).

Importing the package registers every function in `FUNCTIONS`. Blocking functions (`http.*`,
`sys.sleep`, `sys.log`) live in calls.py; they may only be used in `call` steps.
"""

from . import collections, core, dates, encoding, numeric, retry, system, text
from .registry import FUNCTIONS, REQUIRED, CallContext, Function

# Functions that block (or talk to the world); Workflows forbids them inside expressions.
BLOCKING = {
    "http.get",
    "http.post",
    "http.put",
    "http.patch",
    "http.delete",
    "http.request",
    "sys.sleep",
    "sys.sleep_until",
    "sys.log",
}
UNSUPPORTED_PREFIXES = ("events.", "googleapis.", "experimental.")

__all__ = [
    "BLOCKING",
    "FUNCTIONS",
    "REQUIRED",
    "UNSUPPORTED_PREFIXES",
    "CallContext",
    "Function",
    "collections",
    "core",
    "dates",
    "encoding",
    "numeric",
    "retry",
    "system",
    "text",
]
