"""What the local stack puts around a function run as deployed: Cloud Run's request timeout (504),
its invoker check (403), a fresh instance on restart, and nothing but the function's own folder
and environment."""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local import emulator, stack

SLOW = textwrap.dedent(
    """
    import os
    import time

    import functions_framework

    CALLS = []


    @functions_framework.http
    def slow(request):
        CALLS.append(request.path)
        time.sleep(float(request.args.get("sleep", "0")))
        return {"calls": len(CALLS), "cwd": os.getcwd(), "env": sorted(os.environ)}
    """
)
TIMEOUT_SECONDS = 1.0


def call(url: str, sleep: float = 0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"{url}?sleep={sleep}", timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(scope="module")
def allowed() -> list[bool]:
    return [True]


@pytest.fixture(scope="module")
def slow_stack(
    firestore_emulator: emulator.FirestoreEmulator,
    tmp_path_factory: pytest.TempPathFactory,
    allowed: list[bool],
) -> Iterator[stack.LocalStack]:
    source = tmp_path_factory.mktemp("slow")
    (source / "main.py").write_text(SLOW)
    config = stack.FunctionConfig(
        env={"GREETING": "hello"},
        source_dir=source,
        timeout_seconds=TIMEOUT_SECONDS,
        authorize=lambda: allowed[0],
    )
    running = stack.start(
        "ingress-test",
        log_dir=tmp_path_factory.mktemp("logs"),
        firestore=firestore_emulator,
        functions={"slow": config},
    )
    yield running
    running.stop()


@pytest.mark.emulator
def test_a_function_runs_in_its_own_folder_with_only_its_environment(
    slow_stack: stack.LocalStack,
) -> None:
    function = slow_stack.functions["slow"]
    status, body = call(function.url)
    assert status == 200
    assert body["cwd"] == str(function.cwd)
    # What it was given, what Cloud Run sets and what functions-framework sets itself; nothing
    # of this test process's environment (FIRESTORE_EMULATOR_HOST, DOTENV_PATH, ...).
    given = {"GREETING", "PATH", "HOME", "TMPDIR", "LANG", "PORT", "K_SERVICE", "FUNCTION_TARGET"}
    framework = {"FUNCTION_SIGNATURE_TYPE", "SERVER_SOFTWARE"}
    assert set(body["env"]) == given | framework


@pytest.mark.emulator
def test_a_request_past_the_timeout_gets_504_and_the_instance_lives_on(
    slow_stack: stack.LocalStack,
) -> None:
    # https://cloud.google.com/run/docs/configuring/request-timeout: "the request ends and an
    # error 504 is returned. Note that the container instance that served the request is not
    # terminated."
    function = slow_stack.functions["slow"]
    status, body = call(function.url, sleep=TIMEOUT_SECONDS * 3)
    assert (status, body) == (504, "upstream request timeout")
    assert function.process.poll() is None
    status, after = call(function.url)
    assert status == 200
    assert after["calls"] >= 2  # the cut request reached it, and it went on


@pytest.mark.emulator
def test_a_caller_without_the_invoker_role_gets_403_and_never_reaches_the_function(
    slow_stack: stack.LocalStack, allowed: list[bool]
) -> None:
    url = slow_stack.functions["slow"].url
    _, before = call(url)
    allowed[0] = False
    try:
        status, _ = call(url)
    finally:
        allowed[0] = True
    assert status == 403
    _, after = call(url)
    assert after["calls"] == before["calls"] + 1


@pytest.mark.emulator
def test_a_restart_is_a_fresh_instance_behind_the_same_url(slow_stack: stack.LocalStack) -> None:
    function = slow_stack.functions["slow"]
    url = function.url
    call(url)
    slow_stack.restart("slow")
    status, body = call(url)
    assert (status, body["calls"]) == (200, 1)
    assert function.url == url


@pytest.mark.emulator
def test_a_function_as_deployed_imports_only_what_its_folder_holds(
    firestore_emulator: emulator.FirestoreEmulator, tmp_path: Path
) -> None:
    # The repository's packages are installed (editable) in this environment; a deployed zip
    # that lacks common/ must not find them there.
    source = tmp_path / "needs_common"
    source.mkdir()
    (source / "main.py").write_text(
        "import functions_framework\nfrom common import money\n\n\n"
        "@functions_framework.http\ndef needs_common(request):\n    return 'ok'\n"
    )
    config = stack.FunctionConfig(source_dir=source)
    with pytest.raises(stack.StackError, match="No module named 'common'"):
        stack.start(
            "ingress-test",
            log_dir=tmp_path / "logs",
            firestore=firestore_emulator,
            functions={"needs_common": config},
        )
