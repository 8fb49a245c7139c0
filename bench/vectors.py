"""Vector search and embedding figures for the default backends.

1. Firestore vector search on the emulator (the same queries production sends), at 1k and 10k
   evidence documents of the embedding dimension (384) across 50 businesses: write throughput
   (batches of 400), and query latency p50/p99 for top-6 without a filter and pre-filtered to one
   business (~2% of documents), which is what every phase asks. The emulator scans; production
   Firestore uses the flat vector index terraform/firestore.tf declares, so these figures say
   what the code costs locally, not what production will answer in.
2. The offline embedding model (all-MiniLM-L6-v2 int8 on onnxruntime): load time and throughput
   in texts/s for evidence-sized snippets (~40 words).

    .venv/bin/python bench/vectors.py [--queries 100] [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from google.cloud import firestore

from common.search.embeddings import LocalEmbedder
from common.search.firestore import FirestoreVectorIndex
from local import emulator

DIM = LocalEmbedder.dimension
BUSINESSES = 50


def rss_mib() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def bench_index(size: int, queries: int, rng: np.random.Generator) -> None:
    vectors = rng.standard_normal((size, DIM)).astype(np.float32)
    metadata = [{"business_id": f"biz-{int(rng.integers(BUSINESSES))}"} for _ in range(size)]
    filters: dict[str, dict[str, Any] | None] = {
        "no filter": None,
        "pre-filtered to 1 business of 50": {"business_id": "biz-7"},
    }
    project = f"bench-{uuid.uuid4().hex[:8]}"
    index = FirestoreVectorIndex(firestore.Client(project=project), "evidence", DIM)
    started = time.perf_counter()
    index.add_embeddings([f"e{n}" for n in range(size)], vectors, metadata)
    build = time.perf_counter() - started
    print(f"\n{size:,} documents x {DIM} dims (Firestore emulator)")
    print(f"  write: {build:6.2f} s = {size / build:7.0f} documents/s")
    for name, condition in filters.items():
        samples = []
        for _ in range(queries):
            query = rng.standard_normal(DIM)
            started = time.perf_counter()
            index.search(query, top_k=6, filter=condition)
            samples.append((time.perf_counter() - started) * 1000)
        p50, p99 = percentiles(samples)
        print(f"  query top-6, {name:34s} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms")


def bench_embeddings(texts: int) -> None:
    words = [
        "customers",
        "praise",
        "the",
        "trail",
        "shoes",
        "for",
        "grip",
        "on",
        "wet",
        "rocks",
        "while",
        "reviewers",
        "note",
        "the",
        "price",
        "is",
        "higher",
        "than",
        "competitors",
        "and",
        "delivery",
        "to",
        "rural",
        "areas",
        "takes",
        "two",
        "weeks",
        "on",
        "average",
        "according",
        "to",
        "a",
        "survey",
        "of",
        "independent",
        "retailers",
        "in",
        "the",
        "region",
        "last",
        "spring",
    ]
    rng = np.random.default_rng(1)
    snippets = [" ".join(rng.choice(words, size=40)) for _ in range(texts)]
    model = LocalEmbedder()
    started = time.perf_counter()
    model.embed(["warm up"])
    load = time.perf_counter() - started
    started = time.perf_counter()
    model.embed(snippets)
    elapsed = time.perf_counter() - started
    print(f"\noffline embeddings ({model.model}, {model.dimension} dims)")
    print(f"  load (sha-256 checks + ONNX session): {load:5.2f} s")
    print(f"  {texts} snippets of 40 words: {elapsed:5.2f} s = {texts / elapsed:6.1f} texts/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--texts", type=int, default=512)
    args = parser.parse_args()
    print(
        f"numpy {np.__version__}; {os.cpu_count()} CPUs; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}"
    )
    rng = np.random.default_rng(42)
    running = emulator.start()
    os.environ["FIRESTORE_EMULATOR_HOST"] = running.host
    try:
        for size in args.sizes:
            bench_index(size, args.queries, rng)
    finally:
        running.stop()
    bench_embeddings(args.texts)


if __name__ == "__main__":
    main()
