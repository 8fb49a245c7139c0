"""Prices: exact nano-dollar costs from usage, for every catalogue model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from common.llm import get_router
from common.llm.catalogue import CatalogueError, UnpricedModel, load_catalogue
from common.platform.settings import get_settings
from common.spend.records import TokenUsage

CATALOGUE = load_catalogue()
# 1M prompt tokens of which 200k cached, 300k visible output, 100k reasoning.
BIG = TokenUsage(
    input_tokens=1_000_000,
    cached_input_tokens=200_000,
    output_tokens=300_000,
    reasoning_tokens=100_000,
)


@pytest.mark.parametrize(
    ("model", "nanos"),
    [
        # 800k x input + 200k x cached + 400k x output, prices per 1M tokens.
        ("gpt-5-nano", 40_000_000 + 1_000_000 + 160_000_000),  # $0.05 / $0.005 / $0.40
        ("gpt-5-mini", 200_000_000 + 5_000_000 + 800_000_000),  # $0.25 / $0.025 / $2.00
        ("gpt-5", 1_000_000_000 + 25_000_000 + 4_000_000_000),  # $1.25 / $0.125 / $10
        ("gemini-2.5-flash-lite", 80_000_000 + 2_000_000 + 160_000_000),  # $0.10 / $0.01 / $0.40
        ("gemini-2.5-flash", 240_000_000 + 6_000_000 + 1_000_000_000),  # $0.30 / $0.03 / $2.50
        # A 1M-token prompt is over 200k: $2.50 / $0.25 / $15.
        ("gemini-2.5-pro", 2_000_000_000 + 50_000_000 + 6_000_000_000),
    ],
)
def test_exact_cost_with_cached_and_reasoning_tokens(model: str, nanos: int) -> None:
    assert CATALOGUE.model(model).cost_nanos(BIG) == nanos


def test_every_catalogue_model_is_covered_above() -> None:
    assert set(CATALOGUE.models) == {
        "gpt-5-nano",
        "gpt-5-mini",
        "gpt-5",
        "gemini-2.5-flash-lite",
        "gemini-2.5-flash",
        "gemini-2.5-pro",
    }


def test_gemini_pro_long_context_price_starts_above_200k_prompt_tokens() -> None:
    pro = CATALOGUE.model("gemini-2.5-pro")
    at_limit = TokenUsage(input_tokens=200_000, output_tokens=1_000)
    above = TokenUsage(input_tokens=200_001, output_tokens=1_000)
    assert pro.cost_nanos(at_limit) == 200_000 * 1_250 + 1_000 * 10_000
    assert pro.cost_nanos(above) == 200_001 * 2_500 + 1_000 * 15_000
    short = TokenUsage(
        input_tokens=150_000,
        cached_input_tokens=50_000,
        output_tokens=10_000,
        reasoning_tokens=5_000,
    )
    assert pro.cost_nanos(short) == 100_000 * 1_250 + 50_000 * 125 + 15_000 * 10_000


def test_single_tokens_cost_whole_nanos() -> None:
    nano = CATALOGUE.model("gpt-5-nano")
    assert nano.cost_nanos(TokenUsage(input_tokens=1)) == 50
    assert nano.cost_nanos(TokenUsage(input_tokens=1, cached_input_tokens=1)) == 5
    assert nano.cost_nanos(TokenUsage(input_tokens=0, reasoning_tokens=1)) == 400


def test_cached_tokens_beyond_the_input_are_rejected() -> None:
    with pytest.raises(ValueError, match="cached_input_tokens"):
        CATALOGUE.model("gpt-5").cost_nanos(TokenUsage(input_tokens=1, cached_input_tokens=2))


def test_an_unpriced_model_is_an_error_not_zero() -> None:
    with pytest.raises(UnpricedModel, match="gpt-6-ultra"):
        CATALOGUE.model("gpt-6-ultra")


def _custom(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load((Path(__file__).parents[3] / "common/llm/catalogue.yaml").read_text())
    data.update(changes)
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_fractional_nano_prices_round_up(tmp_path: Path) -> None:
    data = yaml.safe_load((Path(__file__).parents[3] / "common/llm/catalogue.yaml").read_text())
    data["models"]["gpt-5-nano"]["price"]["input"] = "0.0001"  # 0.1 nano-dollars per token
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    nano = load_catalogue(path).model("gpt-5-nano")
    assert nano.cost_nanos(TokenUsage(input_tokens=3)) == 1
    assert nano.cost_nanos(TokenUsage(input_tokens=10)) == 1
    assert nano.cost_nanos(TokenUsage(input_tokens=11)) == 2


def test_invalid_catalogue_names_the_field(tmp_path: Path) -> None:
    data = yaml.safe_load((Path(__file__).parents[3] / "common/llm/catalogue.yaml").read_text())
    del data["models"]["gpt-5-mini"]["price"]["output"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogueError, match=r"models\.gpt-5-mini\.price\.output: Field required"):
        load_catalogue(path)


def test_routing_to_an_unpriced_model_is_rejected(tmp_path: Path) -> None:
    path = _custom(
        tmp_path,
        routing={
            "openai": {"nano": "gpt-5-nano", "mini": "gpt-5-mini", "full": "gpt-5-pro"},
            "gemini": {
                "nano": "gemini-2.5-flash-lite",
                "mini": "gemini-2.5-flash",
                "full": "gemini-2.5-pro",
            },
        },
    )
    with pytest.raises(
        CatalogueError, match=r"routing\.openai\.full: model 'gpt-5-pro' is not priced"
    ):
        load_catalogue(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"absent\.yaml"):
        load_catalogue(tmp_path / "absent.yaml")


def test_settings_override_the_catalogue(tmp_path: Path, router_env: pytest.MonkeyPatch) -> None:
    data = yaml.safe_load((Path(__file__).parents[3] / "common/llm/catalogue.yaml").read_text())
    data["version"] = "test-override"
    data["models"]["gpt-5-mini"]["price"]["output"] = "4.00"
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(data))
    router_env.setenv("MODEL_CATALOGUE_PATH", str(path))
    get_settings.cache_clear()  # a background thread may have read the settings before
    router = get_router()
    assert router.catalogue.version == "test-override"
    assert (
        router.catalogue.model("gpt-5-mini").cost_nanos(TokenUsage(input_tokens=0, output_tokens=1))
        == 4_000
    )
