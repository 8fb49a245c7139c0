"""The vendored offline checker (tools/terraform-offline) on small configurations of its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.terraform.planfile import Plan, check_script

PROVIDERS = """
terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}
"""


def check(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(check_script()), str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def write(tmp_path: Path, body: str) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "main.tf").write_text(PROVIDERS + body)
    return config


def test_a_dynamic_block_over_each_value_validates_and_plans(tmp_path: Path) -> None:
    # At validate time for_each keys are unknown, so the block arrives unknown; the stand-in
    # provider used to crash on it ("'_Unknown' object is not iterable").
    config = write(
        tmp_path,
        """
resource "google_firestore_index" "index" {
  for_each   = { a = [["x", "ASCENDING"], ["y", "ASCENDING"], ["z", "DESCENDING"]] }
  project    = "demo-project"
  collection = "things"
  dynamic "fields" {
    for_each = each.value
    content {
      field_path = fields.value[0]
      order      = fields.value[1]
    }
  }
}
""",
    )
    out = tmp_path / "plan.json"
    done = check(config, "--plan-json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    (index,) = Plan.load(out).of_type("google_firestore_index")
    assert [f["field_path"] for f in index.values["fields"]] == ["x", "y", "z"]


def test_a_computed_only_attribute_in_a_block_is_refused(tmp_path: Path) -> None:
    # As the real provider does: `uri` of a function's service_config is Google's to decide.
    config = write(
        tmp_path,
        """
resource "google_cloudfunctions2_function" "f" {
  name     = "f"
  location = "us-central1"
  service_config {
    uri = "https://example.com"
  }
}
""",
    )
    done = check(config, "--no-plan")
    assert done.returncode == 1
    assert "Value for unconfigurable attribute" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("pin", "returncode", "message"),
    [
        ("hashicorp/google=8.7.0", 1, "no available releases match"),
        ("hashicorp/google=6.50.0", 2, "no schema for hashicorp/google=6.50.0"),
    ],
)
def test_a_pinned_provider_version_is_the_only_one_served(
    tmp_path: Path, pin: str, returncode: int, message: str
) -> None:
    config = write(tmp_path, "")
    below_8 = 'version = "< 8.0"\n      source  = '
    (config / "main.tf").write_text(PROVIDERS.replace("source = ", below_8))
    done = check(config, "--no-plan", "--provider", pin)
    assert done.returncode == returncode
    assert message in " ".join((done.stdout + done.stderr).split())
