"""Peak memory of a process tree (local/memory.py), read from /proc as the parity run reads it."""

from __future__ import annotations

import subprocess
import sys
import time

from local import memory

MIB = 2**20
# A parent that starts a child; the child holds 160 MiB of its own (written, so resident), says
# so, and waits until stdin closes.
CHILD = (
    "import sys; block = bytearray(160 * 2**20); block[::4096] = b'x' * len(block[::4096]);"
    "print('ready', flush=True); sys.stdin.read()"
)
PARENT = (
    "import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', sys.argv[1]]);"
    "child.wait()"
)


def test_the_peak_of_a_tree_counts_its_children() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "ready\n"
        tree = memory.descendants(parent.pid)
        assert len(tree) == 2 and tree[0] == parent.pid
        sampler = memory.PeakSampler({"tree": lambda: parent.pid}, interval=0.05).start()
        time.sleep(0.2)
        peaks = sampler.peaks()
        alone = memory.read_tree(tree[1])
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait(timeout=30)
    sampler.stop()
    # The child's 160 MiB are in the tree's peak; the tree holds more than the child alone.
    assert peaks["tree"] >= 160 * MIB
    assert peaks["tree"] > alone.pss
    # A tree that is gone reads as nothing; its peak stays.
    assert memory.read_tree(parent.pid) == memory.TreeMemory(0, 0)
    assert sampler.peaks()["tree"] >= peaks["tree"]
