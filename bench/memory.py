"""Peak memory and time of the local embedding model by batch size, on research's worst case.

Research embeds up to 32 snippets (the description, the situation summary, 20 evidence claims, 10
competitors), each cut at the model's 256 tokens. For each batch size this starts a fresh process
(so one size's arena does not carry into the next), loads the model, embeds 32 texts of 256
tokens three times, and prints the process's peak resident memory (VmHWM) and the seconds per
call. The parity run (tests/parity) measures whole functions against their Terraform memory.

    .venv/bin/python -m bench.memory [--batches 1 2 4 8 16 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_PROBE = """
import json, sys, time
from common.search.embeddings import LocalEmbedder
from local import memory
import os
embedder = LocalEmbedder(batch_size=int(sys.argv[1]))
embedder.embed(["load the model"])
loaded = memory.read_tree(os.getpid()).hwm
texts = [f"snippet {n}: " + "evidence about the market and its buyers " * 60 for n in range(32)]
times = []
for _ in range(3):
    started = time.perf_counter()
    embedder.embed(texts)
    times.append(time.perf_counter() - started)
print(json.dumps({"loaded": loaded, "peak": memory.read_tree(os.getpid()).hwm,
                  "seconds": min(times)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    args = parser.parse_args()
    print("batch  model loaded  peak      s per 32 texts")
    for batch in args.batches:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(batch)],
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(done.stdout.splitlines()[-1])
        print(
            f"{batch:5d}  {figures['loaded'] / 2**20:8.0f} MiB  {figures['peak'] / 2**20:5.0f} MiB"
            f"  {figures['seconds']:6.2f}"
        )


if __name__ == "__main__":
    main()
