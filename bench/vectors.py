"""Vector search and embedding figures for the local (default) backends.

1. The local exact index at 10k and 100k vectors of the embedding dimension (384): build time
   (add in batches of 10k, SQLite included), reopen time (a restart), query latency p50/p99 for
   top-10 without a filter, with a selective filter (one business of 50: ~2% of rows) and with a
   broad one (a business list plus a deny and a numeric range: ~30% of rows), and memory (the
   vector matrix, and the process's resident set growth).
2. The offline embedding model (all-MiniLM-L6-v2 int8 on onnxruntime): load time and throughput
   in texts/s for evidence-sized snippets (~40 words).

    .venv/bin/python bench/vectors.py [--queries 200] [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common.search.embeddings import LocalEmbedder
from common.search.index import LocalVectorIndex

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
    metadata = [
        {
            "business_id": f"biz-{int(rng.integers(BUSINESSES))}",
            "kind": ["evidence", "description", "draft"][int(rng.integers(3))],
            "created_at": int(rng.integers(0, 1000)),
        }
        for _ in range(size)
    ]
    filters: dict[str, dict[str, Any] | None] = {
        "no filter": None,
        "selective (1 business)": {"business_id": "biz-7"},
        "broad (20 businesses, deny, range)": {
            "business_id": [f"biz-{n}" for n in range(20)],
            "kind": {"deny": ["draft"]},
            "created_at": {">=": 100, "<": 900},
        },
    }
    with tempfile.TemporaryDirectory() as directory:
        gc.collect()
        rss_before = rss_mib()
        started = time.perf_counter()
        index = LocalVectorIndex(directory)
        for start in range(0, size, 10_000):
            stop = start + 10_000
            index.add_embeddings(
                [f"v{n}" for n in range(start, min(stop, size))],
                vectors[start:stop],
                metadata[start:stop],
            )
        build = time.perf_counter() - started
        rss_after = rss_mib()
        matrix_mib = size * DIM * 4 / 2**20
        index.close()

        started = time.perf_counter()
        index = LocalVectorIndex(directory)
        reopen = time.perf_counter() - started
        db_mib = (Path(directory) / "index.sqlite3").stat().st_size / 2**20

        print(f"\n{size:,} vectors x {DIM} dims")
        print(f"  build (add in 10k batches, SQLite included): {build:6.2f} s")
        print(f"  reopen (restart, load from SQLite):          {reopen:6.2f} s")
        print(
            f"  vector matrix: {matrix_mib:6.1f} MiB; process RSS growth while building: "
            f"{rss_after - rss_before:6.1f} MiB; SQLite file: {db_mib:6.1f} MiB"
        )
        query_vectors = rng.standard_normal((queries, DIM)).astype(np.float32)
        for name, filter in filters.items():
            index.search(query_vectors[0], top_k=10, filter=filter)  # builds the filter index
            timings = []
            for query in query_vectors:
                started = time.perf_counter()
                found = index.search(query, top_k=10, filter=filter)
                timings.append((time.perf_counter() - started) * 1000)
                assert len(found) == 10
            p50, p99 = percentiles(timings)
            print(f"  query top-10, {name:36s} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
        index.close()


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
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--texts", type=int, default=512)
    args = parser.parse_args()
    print(
        f"numpy {np.__version__}; {os.cpu_count()} CPUs; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}"
    )
    rng = np.random.default_rng(42)
    for size in args.sizes:
        bench_index(size, args.queries, rng)
    bench_embeddings(args.texts)


if __name__ == "__main__":
    main()
