"""Development secrets: environment then `.env`, TTL cache, placeholders, audit logs, redaction."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from common.platform import secrets
from common.platform.secrets import SecretNotFound, Secrets
from common.platform.settings import Settings, get_settings

from .conftest import FakeClock

REAL_OPENAI = "sk-proj-9fK2LmQ7xR4tB8vN1cZ6wE3yU5"
REAL_GEMINI = "AIzaSyD4f8Gh2Jk9Lm3Np6Qr1St5Uv7Wx0Yz2Ab"


def test_environment_wins_over_dotenv_file(
    make_settings: Callable[..., Settings], hermetic: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hermetic.write_text(f"OPENAI_API_KEY={REAL_OPENAI}-file\nGEMINI_API_KEY={REAL_GEMINI}\n")
    monkeypatch.setenv("OPENAI_API_KEY", REAL_OPENAI)
    store = Secrets(make_settings())

    assert store.get("OPENAI_API_KEY") == REAL_OPENAI
    assert store.get("GEMINI_API_KEY") == REAL_GEMINI


def test_missing_secret_is_none_for_find_and_a_named_error_for_get(
    make_settings: Callable[..., Settings], hermetic: Path
) -> None:
    store = Secrets(make_settings())

    assert store.find("OPENAI_API_KEY") is None
    with pytest.raises(SecretNotFound) as caught:
        store.get("OPENAI_API_KEY")
    message = str(caught.value)
    assert "OPENAI_API_KEY" in message
    assert "environment variable OPENAI_API_KEY" in message
    assert str(hermetic.resolve()) in message


def test_dotenv_in_working_directory_is_ignored_when_dotenv_path_points_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / ".env").write_text(f"OPENAI_API_KEY={REAL_OPENAI}\n")
    monkeypatch.chdir(workdir)
    get_settings.cache_clear()

    assert secrets.find_secret("OPENAI_API_KEY") is None


def test_module_functions_follow_settings_changes(
    hermetic: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert secrets.find_secret("GEMINI_API_KEY") is None
    other = hermetic.with_name("other.env")
    other.write_text(f"GEMINI_API_KEY={REAL_GEMINI}\n")
    monkeypatch.setenv("DOTENV_PATH", str(other))
    get_settings.cache_clear()

    assert secrets.get_secret("GEMINI_API_KEY") == REAL_GEMINI
    assert secrets.check_secrets() == {"OPENAI_API_KEY": False, "GEMINI_API_KEY": True}


def test_cached_value_is_served_until_the_ttl_then_refreshed(
    make_settings: Callable[..., Settings], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", REAL_OPENAI)
    store = Secrets(make_settings(secret_cache_ttl_seconds=60), clock=clock)
    assert store.get("OPENAI_API_KEY") == REAL_OPENAI

    rotated = REAL_OPENAI + "-rotated"
    monkeypatch.setenv("OPENAI_API_KEY", rotated)
    clock.advance(59.9)
    assert store.get("OPENAI_API_KEY") == REAL_OPENAI

    clock.advance(0.1)
    assert store.get("OPENAI_API_KEY") == rotated


def test_default_ttl_is_one_hour(make_settings: Callable[..., Settings]) -> None:
    assert make_settings().secret_cache_ttl_seconds == 3600


def test_absence_is_cached_too_and_noticed_after_the_ttl(
    make_settings: Callable[..., Settings], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Secrets(make_settings(secret_cache_ttl_seconds=10), clock=clock)
    assert store.find("GEMINI_API_KEY") is None
    monkeypatch.setenv("GEMINI_API_KEY", REAL_GEMINI)
    assert store.find("GEMINI_API_KEY") is None

    clock.advance(10)
    assert store.find("GEMINI_API_KEY") == REAL_GEMINI


def test_clear_forgets_cached_values(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", REAL_OPENAI)
    store = Secrets(make_settings())
    store.get("OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", REAL_OPENAI + "2")
    store.clear()

    assert store.get("OPENAI_API_KEY") == REAL_OPENAI + "2"


def test_concurrent_first_lookups_fetch_once(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    log_lines: Callable[[], list[str]],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", REAL_OPENAI)
    store = Secrets(make_settings())
    start = threading.Barrier(16)
    results: list[str] = []

    def worker() -> None:
        start.wait()
        results.append(store.get("OPENAI_API_KEY"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [REAL_OPENAI] * 16
    audits = [json.loads(line) for line in log_lines() if '"secret lookup"' in line]
    assert [a["cache"] for a in audits].count("miss") == 1
    assert [a["cache"] for a in audits].count("hit") == 15


def test_each_lookup_writes_an_audit_line_with_name_source_cache_and_version(
    make_settings: Callable[..., Settings],
    hermetic: Path,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: Callable[[], list[str]],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", REAL_OPENAI)
    hermetic.write_text(f"GEMINI_API_KEY={REAL_GEMINI}\n")
    store = Secrets(make_settings())
    store.get("OPENAI_API_KEY")
    store.get("OPENAI_API_KEY")
    store.get("GEMINI_API_KEY")

    audits = [json.loads(line) for line in log_lines() if '"secret lookup"' in line]
    assert [(a["secret"], a["source"], a["cache"], a["severity"]) for a in audits] == [
        ("OPENAI_API_KEY", "environment", "miss", "INFO"),
        ("OPENAI_API_KEY", "environment", "hit", "DEBUG"),
        ("GEMINI_API_KEY", "dotenv", "miss", "INFO"),
    ]
    assert all(a["version"] is None and a["found"] is True for a in audits)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "sk-...",
        "sk-proj-...",
        "sk-xxxxxxxxxxxxxxxx",
        "AIzaSy...",
        "AIzaSyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "changeme",
        "CHANGE_ME",
        "replace-me",
        "your-openai-api-key-here",
        "your_gemini_key_here",
        "<your key>",
        "${OPENAI_API_KEY}",
        "placeholder",
        "xxx",
    ],
)
def test_placeholders_are_recognised(value: str) -> None:
    assert secrets.is_placeholder(value)


@pytest.mark.parametrize("value", [REAL_OPENAI, REAL_GEMINI, "8c1f0e7d2b9a4c6e", "sk-ant-api03-Zq"])
def test_real_looking_keys_are_not_placeholders(value: str) -> None:
    assert not secrets.is_placeholder(value)


def test_development_treats_a_placeholder_as_not_set_and_says_so(
    make_settings: Callable[..., Settings],
    hermetic: Path,
    log_lines: Callable[[], list[str]],
) -> None:
    # A verbatim copy of .env.example must give the offline provider, not a doomed API call.
    hermetic.write_text("OPENAI_API_KEY=sk-...\n")
    store = Secrets(make_settings())

    assert store.find("OPENAI_API_KEY") is None
    warnings = [json.loads(line) for line in log_lines() if '"WARNING"' in line]
    assert warnings[0]["secret"] == "OPENAI_API_KEY"
    assert "placeholder" in warnings[0]["message"]


def test_invalid_names_are_rejected_with_the_reason(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="secret name 'bad/name' is invalid"):
        Secrets(make_settings()).find("bad/name")


def test_redact_replaces_every_value_read_in_this_process(
    make_settings: Callable[..., Settings], hermetic: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    never_read = "sk-proj-NeverReadByThisProcess42"
    monkeypatch.setenv("OPENAI_API_KEY", REAL_OPENAI)
    hermetic.write_text(f"GEMINI_API_KEY={REAL_GEMINI}\n")
    store = Secrets(make_settings())
    store.get("OPENAI_API_KEY")
    store.get("GEMINI_API_KEY")

    text = f"Authorization: Bearer {REAL_OPENAI}; key={REAL_GEMINI}&x=1"
    assert secrets.redact(text) == "Authorization: Bearer [REDACTED]; key=[REDACTED]&x=1"
    # A key this process never read is redacted by its shape.
    assert secrets.redact(f"x={never_read}&y=2") == "x=[REDACTED]&y=2"
    assert secrets.redact("nothing secret here, task-force 2 ** 3...") == (
        "nothing secret here, task-force 2 ** 3..."
    )


def test_redact_replaces_masked_and_cut_forms_of_a_key(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenAI's 401 quotes a masked key: "Incorrect API key provided: sk-abc12****...wxyz."
    # (e.g. https://github.com/chatanywhere/GPT_API_free/issues/62); a proxy may quote it whole,
    # cut short, or masked down to its last characters.
    key = "sk-proj-Zq81hVb2Lm4Tx9Wc3Ns7Pk5Rd0Fg6Yj"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    Secrets(make_settings()).get("OPENAI_API_KEY")
    masked = f"{key[:8]}{'*' * 30}{key[-4:]}"
    for quoted in (
        f"Incorrect API key provided: {masked}. You can find your API key at ...",
        f"Incorrect API key provided: {key[:20]}",  # a message cut inside the key
        f"key ending in ...{key[-4:]} was refused",
        f"key ending in \u2026{key[-4:]} was refused",
        f"Incorrect API key provided: d57rV0ys{'*' * 20}{key[-4:]}.",
    ):
        redacted = secrets.redact(quoted)
        assert "[REDACTED]" in redacted, quoted
        assert key[-4:] not in redacted and key[:12] not in redacted, redacted


def test_redact_replaces_a_longer_value_whole_when_it_contains_a_shorter_one(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    short = "k3yPart9Zm"
    monkeypatch.setenv("OPENAI_API_KEY", short)
    monkeypatch.setenv("GEMINI_API_KEY", short + "Tail77Qx")
    store = Secrets(make_settings())
    store.get("OPENAI_API_KEY")
    store.get("GEMINI_API_KEY")

    assert secrets.redact(f"a {short}Tail77Qx b {short} c") == "a [REDACTED] b [REDACTED] c"


def test_no_secret_value_appears_in_any_log_line_or_error(
    make_settings: Callable[..., Settings],
    hermetic: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: Callable[[], list[str]],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", REAL_OPENAI)
    hermetic.write_text(f"GEMINI_API_KEY={REAL_GEMINI}\n")
    store = Secrets(make_settings(secret_cache_ttl_seconds=5), clock=clock)
    errors: list[str] = []
    for _ in range(3):
        store.get("OPENAI_API_KEY")
        store.get("GEMINI_API_KEY")
        clock.advance(5)  # every other round is a cache refresh
    try:
        store.get("MISSING_KEY")
    except SecretNotFound as exc:
        errors.append(str(exc))
    hermetic.write_text(f"GEMINI_API_KEY={REAL_GEMINI}\nOTHER=your-key-here\n")
    store.find("OTHER")

    lines = log_lines()
    assert len(lines) >= 8
    for line in [*lines, *errors]:
        assert REAL_OPENAI not in line
        assert REAL_GEMINI not in line
        assert "your-key-here" not in line


def test_env_example_documents_every_secret_with_a_placeholder() -> None:
    from dotenv import dotenv_values

    example = dotenv_values(Path(__file__).parents[3] / ".env.example")

    assert set(example) == set(secrets.KNOWN_SECRETS)
    assert all(value is not None and secrets.is_placeholder(value) for value in example.values())
