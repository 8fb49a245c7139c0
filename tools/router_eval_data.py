"""Evaluation sets for the router's report: RouteLLM's published per-prompt results, converted.

    .venv/bin/python -m tools.router_eval_data --routellm GIT_DIR --out DIR
    .venv/bin/python -m bench.router --eval-data DIR/gsm8k.jsonl --eval-data DIR/mmlu.jsonl \\
        --eval-data DIR/mt-bench.jsonl

GIT_DIR is a clone of lm-sys/RouteLLM (Apache-2.0); nothing is downloaded. Its
`routellm/evals/` holds GPT-4 Turbo's (gpt-4-1106-preview) and Mixtral-8x7B-Instruct's results
on GSM8K (math word problems, right or wrong), MMLU (multiple-choice exams, right or wrong) and
MT-Bench (two-turn open questions, GPT-4's 1-10 rating per turn, routed on the first turn), with
the prompts RouteLLM itself removed as overlapping its training data. These are the benchmarks
issue 21 measured the previous router on: they are used **only for the final report figures**
(never to train, never to choose anything), and are written outside the repository (GSM8K,
MMLU and MT-Bench may not be used for training here in any form).

Output: the pairs format `bench/router.py --eval-data` reads, one JSON object per prompt and
row: source, prompt_id, prompt, strong_quality, weak_quality (0-1).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
EVALS = "routellm/evals"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, check=True, text=True
    ).stdout


def _contaminated(repo: Path, name: str) -> set[str]:
    text = _git(repo, "show", f"HEAD:{EVALS}/{name}/contaminated_prompts.jsonl")
    return {json.loads(line)["eval_prompt"] for line in text.splitlines() if line.strip()}


def _right_or_wrong(repo: Path, path: str, source: str, skip: set[str]) -> list[dict[str, Any]]:
    rows = []
    for i, row in enumerate(csv.DictReader(io.StringIO(_git(repo, "show", f"HEAD:{path}")))):
        if row["prompt"] in skip:
            continue
        rows.append(
            {
                "source": source,
                "prompt_id": f"{Path(path).stem}-{i}",
                "prompt": row["prompt"],
                "strong_quality": float(row[STRONG] == "True"),
                "weak_quality": float(row[WEAK] == "True"),
            }
        )
    return rows


def gsm8k(repo: Path) -> list[dict[str, Any]]:
    """GSM8K's rows, RouteLLM's contaminated prompts left out."""
    path = f"{EVALS}/gsm8k/gsm8k_responses.csv"
    return _right_or_wrong(repo, path, "gsm8k", _contaminated(repo, "gsm8k"))


def mmlu(repo: Path) -> list[dict[str, Any]]:
    """MMLU's rows (every domain), RouteLLM's contaminated prompts left out."""
    skip = _contaminated(repo, "mmlu")
    listing = _git(repo, "ls-tree", "--name-only", "HEAD", f"{EVALS}/mmlu/responses/")
    return [
        row
        for path in sorted(listing.split())
        if path.endswith(".csv")
        for row in _right_or_wrong(repo, path, "mmlu", skip)
    ]


def mt_bench(repo: Path) -> list[dict[str, Any]]:
    """MT-Bench: two rows per question (its turns), routed on the first turn."""
    skip = _contaminated(repo, "mt_bench")
    questions = {}
    for line in _git(repo, "show", f"HEAD:{EVALS}/mt_bench/question.jsonl").splitlines():
        item = json.loads(line)
        if not (set(item["turns"][:2]) & skip):
            questions[item["question_id"]] = item["turns"][0]
    scores: dict[tuple[int, int], dict[str, float]] = {}
    for line in _git(repo, "show", f"HEAD:{EVALS}/mt_bench/judgements.jsonl").splitlines():
        item = json.loads(line)
        if item["question_id"] in questions and re.fullmatch(r"\d+(\.\d+)?", str(item["score"])):
            key = (item["question_id"], int(item["turn"]))
            scores.setdefault(key, {})[item["model"]] = (float(item["score"]) - 1) / 9
    return [
        {
            "source": "mt-bench",
            "prompt_id": f"mt-bench-{qid}",
            "prompt": questions[qid],
            "strong_quality": found[STRONG],
            "weak_quality": found[WEAK],
        }
        for (qid, _), found in sorted(scores.items())
        if STRONG in found and WEAK in found
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routellm", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (
        ("gsm8k", gsm8k(args.routellm)),
        ("mmlu", mmlu(args.routellm)),
        ("mt-bench", mt_bench(args.routellm)),
    ):
        path = args.out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        print(f"{path}: {len(rows)} rows")


if __name__ == "__main__":
    main()
