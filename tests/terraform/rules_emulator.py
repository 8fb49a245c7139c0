"""The Firestore emulator with security rules, spoken to as a client would: REST + ID tokens.

The emulator accepts unsigned ID tokens (`alg: none`) and treats `Authorization: Bearer owner`
as an admin that bypasses the rules (used only to seed data). It loads the rules file lazily and
answers every request with 400 "Error compiling rules: L<line>:<col> ..." when the file does not
compile; `start_with_rules` turns that into `RulesCompileError` naming file:line:column.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from local import emulator

ADMIN = "owner"


class RulesCompileError(RuntimeError):
    """The rules file does not compile; the message is `file:line:column: reason` per error."""


def id_token(uid: str, project: str) -> str:
    """An unsigned Firebase ID token for `uid`, as the emulator accepts them."""
    now = int(time.time())
    header = {"alg": "none", "typ": "JWT"}
    payload = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "sub": uid,
        "user_id": uid,
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
        "firebase": {"sign_in_provider": "password", "identities": {}},
    }

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(payload)}."


def encode(value: Any) -> dict[str, Any]:
    """A Python value as a Firestore REST `Value`."""
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [encode(v) for v in value]}}
    if isinstance(value, dict):
        return {"mapValue": {"fields": {k: encode(v) for k, v in value.items()}}}
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode(value: dict[str, Any]) -> Any:
    """A Firestore REST `Value` as a Python value (the kinds `encode` writes)."""
    ((kind, raw),) = value.items()
    if kind == "integerValue":
        return int(raw)
    if kind == "arrayValue":
        return [decode(v) for v in raw.get("values", [])]
    if kind == "mapValue":
        return {k: decode(v) for k, v in raw.get("fields", {}).items()}
    return raw


class Client:
    """Documents of one project on the emulator, as a user (`uid`), anonymous (None) or admin."""

    def __init__(self, host: str, project: str, uid: str | None) -> None:
        self.base = f"http://{host}/v1/projects/{project}/databases/(default)/documents"
        self.project = project
        self.uid = uid

    def _send(
        self, method: str, url: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if self.uid == ADMIN:
            headers["Authorization"] = f"Bearer {ADMIN}"
        elif self.uid is not None:
            headers["Authorization"] = f"Bearer {id_token(self.uid, self.project)}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        """Read one document; (status, fields as Python values or the error body)."""
        status, body = self._send("GET", f"{self.base}/{path}")
        if status == 200:
            return status, {k: decode(v) for k, v in body.get("fields", {}).items()}
        return status, body

    def list(self, collection_path: str) -> int:
        """List a collection's documents; the status."""
        return self._send("GET", f"{self.base}/{collection_path}")[0]

    def query_equal(self, collection: str, field: str, value: Any) -> int:
        """Run `collection where field == value`; the status."""
        query = {
            "structuredQuery": {
                "from": [{"collectionId": collection}],
                "where": {
                    "fieldFilter": {
                        "field": {"fieldPath": field},
                        "op": "EQUAL",
                        "value": encode(value),
                    }
                },
            }
        }
        return self._send("POST", f"{self.base}:runQuery", query)[0]

    def set(self, path: str, data: dict[str, Any]) -> int:
        """Create or replace a whole document; the status."""
        body = {"fields": {k: encode(v) for k, v in data.items()}}
        return self._send("PATCH", f"{self.base}/{path}", body)[0]

    def update(self, path: str, data: dict[str, Any]) -> int:
        """Change only the given fields of an existing document; the status."""
        mask = "&".join(f"updateMask.fieldPaths={urllib.parse.quote(k)}" for k in data)
        body = {"fields": {k: encode(v) for k, v in data.items()}}
        url = f"{self.base}/{path}?{mask}&currentDocument.exists=true"
        return self._send("PATCH", url, body)[0]

    def create(self, collection_path: str, doc_id: str, data: dict[str, Any]) -> int:
        """Create a new document; the status."""
        body = {"fields": {k: encode(v) for k, v in data.items()}}
        url = f"{self.base}/{collection_path}?documentId={urllib.parse.quote(doc_id)}"
        return self._send("POST", url, body)[0]

    def delete(self, path: str) -> int:
        """Delete a document; the status."""
        return self._send("DELETE", f"{self.base}/{path}")[0]


def _compile_errors(rules: Path, message: str) -> str:
    found = re.findall(r"L(\d+):(\d+) ([^\n]*)", message)
    if not found:
        return f"{rules}: {message}"
    return "\n".join(f"{rules}:{line}:{column}: {reason}" for line, column, reason in found)


def start_with_rules(rules: Path) -> emulator.FirestoreEmulator:
    """Start the emulator with `rules`; raises `RulesCompileError` if the file does not compile."""
    running = emulator.start(rules=rules)
    status, body = Client(running.host, "rules-probe", None).get("probe/probe")
    message = str(body.get("error", {}).get("message", ""))
    if status == 400 and "Error compiling rules" in message:
        running.stop()
        raise RulesCompileError(_compile_errors(rules, message))
    return running
