"""Rebuild the router's vendored training data from its two upstream repositories.

    .venv/bin/python -m tools.router_data --arena-hard-auto GIT_DIR --mmlu-pro GIT_DIR

Each GIT_DIR is a clone (a bare one will do) of the repository named below; nothing is
downloaded. Writes `data/router-training/arena-bench-v1.jsonl` and `mmlu-pro.jsonl`, one JSON
object per prompt with every model's quality on it (data/router-training/README.md: columns,
licences, what was changed). Not part of `make train-router`: the files it writes are vendored.

- lmarena/arena-hard-auto (Apache-2.0): `data/arena-bench-v1/question.jsonl` and every model's
  single-answer ratings (1-10, GPT-4 against a reference answer) in
  `data/arena-bench-v1/model_judgment/`, each model from the newest commit that holds it.
- TIGER-AI-Lab/MMLU-Pro (code Apache-2.0, data MIT): per-question answers of a few models in
  `eval_results/model_outputs_*_5shots.zip`; every question whose `src` is MMLU is left out.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "router-training"

ARENA_QUESTIONS_COMMIT = "4a705dd6963f777aba2ae79259e3013934e6e012"
ARENA_DIR = "data/arena-bench-v1"
# Overlaps a public benchmark the router is judged on (a shared 13-gram and a near-duplicate).
ARENA_DROPPED = {"91956666f79a4a9688fa40972cfa994c"}
_RATING = re.compile(r"\[\[(\d+(?:\.\d+)?)\]\]")

MMLU_PRO_COMMIT = "f418b116db00b065c2aea046518d8fcf74d39872"
# Strong and weak model of one family each. Qwen1.5's results are left out: 18-23% of its
# answers could not be parsed. Larger result files (GPT-4o and others) are not in the snapshot.
MMLU_PRO_MODELS = (
    "gemini-1.5-pro-002",
    "gemini-1.5-flash-002",
    "Meta-Llama-3_1-70B-Instruct",
    "Meta-Llama-3_1-8B-Instruct",
)
_LETTERS = "ABCDEFGHIJ"


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True).stdout


def _jsonl(text: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.decode("utf-8").splitlines() if line.strip()]


def _rating(judgment: dict[str, Any]) -> float | None:
    score = str(judgment.get("score") or "").strip()
    if score:
        return float(score)
    found = _RATING.findall(str(judgment.get("judgment") or ""))
    value = float(found[-1]) if found else None
    return value if value is not None and 1 <= value <= 10 else None


def arena_bench(repo: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """One object per question with every model's quality, and the commits used."""
    questions = _jsonl(_git(repo, "show", f"{ARENA_QUESTIONS_COMMIT}:{ARENA_DIR}/question.jsonl"))
    newest: dict[str, tuple[str, str]] = {}  # model -> (commit, path), newest commit first
    commits = _git(repo, "log", "--all", "--format=%H", "--", f"{ARENA_DIR}/model_judgment")
    for commit in commits.decode().split():
        listing = _git(repo, "ls-tree", "--name-only", commit, f"{ARENA_DIR}/model_judgment/")
        for path in listing.decode().split("\n"):
            if not path.endswith(".jsonl"):
                continue
            rows = _jsonl(_git(repo, "show", f"{commit}:{path}"))
            models = {row.get("model") for row in rows} - {None}
            if len(models) == 1 and len(rows) >= 290:
                newest.setdefault(str(models.pop()), (commit, path))
    ratings: dict[str, dict[str, float]] = {}
    for model, (commit, path) in sorted(newest.items()):
        for row in _jsonl(_git(repo, "show", f"{commit}:{path}")):
            value = _rating(row)
            if value is not None and row.get("model") == model:
                ratings.setdefault(row["question_id"], {})[model] = value
    out = []
    for question in questions:
        qid = question["question_id"]
        if qid in ARENA_DROPPED:
            continue
        raw = dict(sorted(ratings.get(qid, {}).items()))
        out.append(
            {
                "source": "arena-bench-v1",
                "prompt_id": qid,
                "subset": "arena-bench-v1",
                "prompt": question["turns"][0],
                "raw": raw,
                "quality": {model: round((value - 1) / 9, 6) for model, value in raw.items()},
            }
        )
    used = sorted({f"{model}: {commit[:12]} {path}" for model, (commit, path) in newest.items()})
    return out, used


def mmlu_pro_prompt(item: dict[str, Any]) -> str:
    """A question as a user would ask it: the question, then its lettered options."""
    options = item["options"]
    if isinstance(options, str):  # the result files store the list as its Python repr
        options = ast.literal_eval(options)
    lines = [item["question"].strip(), "", "Options:"]
    lines += [f"{_LETTERS[i]}. {str(option).strip()}" for i, option in enumerate(options)]
    return "\n".join(lines)


def mmlu_pro(repo: Path) -> list[dict[str, Any]]:
    """One object per non-MMLU question that every model answered, with 1/0 per model."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for model in MMLU_PRO_MODELS:
        blob = _git(
            repo, "show", f"{MMLU_PRO_COMMIT}:eval_results/model_outputs_{model}_5shots.zip"
        )
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            items = json.loads(archive.read(archive.namelist()[0]))
        results[model] = {str(item["question_id"]): item for item in items}
    first = results[MMLU_PRO_MODELS[0]]
    out = []
    for qid in sorted(set.intersection(*(set(r) for r in results.values())), key=int):
        item = first[qid]
        if item["src"].startswith("ori_mmlu"):
            continue  # no MMLU question, in any form
        same = {(r[qid]["question"], r[qid]["answer"]) for r in results.values()}
        if len(same) > 1:
            continue  # the files disagree on the question or its answer
        out.append(
            {
                "source": "mmlu-pro",
                "prompt_id": f"mmlu-pro-{qid}",
                "subset": item["src"].split("-")[0],
                "category": item["category"],
                "prompt": mmlu_pro_prompt(item),
                "answer": item["answer"],
                "raw": {m: results[m][qid]["pred"] for m in MMLU_PRO_MODELS},
                "quality": {
                    m: int(results[m][qid]["pred"] == item["answer"]) for m in MMLU_PRO_MODELS
                },
            }
        )
    return out


def write_jsonl(items: list[dict[str, Any]], path: Path) -> None:
    """One compact JSON object per line, UTF-8, in the given order."""
    text = "".join(
        json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n" for item in items
    )
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arena-hard-auto", type=Path, required=True)
    parser.add_argument("--mmlu-pro", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    arena, used = arena_bench(args.arena_hard_auto)
    write_jsonl(arena, args.out / "arena-bench-v1.jsonl")
    exams = mmlu_pro(args.mmlu_pro)
    write_jsonl(exams, args.out / "mmlu-pro.jsonl")
    print(f"arena-bench-v1: {len(arena)} prompts; judgments used:")
    for line in used:
        print(f"  {line}")
    print(f"mmlu-pro: {len(exams)} questions (MMLU's left out)")


if __name__ == "__main__":
    main()
