"""The arithmetic of the API's sharded rate limit (common.backend.ratelimit): the shards hold
the whole burst between them, and every tick belongs to exactly one shard."""

from __future__ import annotations

import pytest

from common.backend.ratelimit import MAX_SHARDS, capacity, shards, ticks


@pytest.mark.parametrize("burst", [1, 2, 3, 4, 5, 7, 8, 13, 100, 1000])
def test_the_shards_hold_the_burst_each_at_least_one_token(burst: int) -> None:
    count = shards(burst)
    assert 1 <= count <= MAX_SHARDS
    held = [capacity(burst, shard) for shard in range(count)]
    assert sum(held) == burst
    assert min(held) >= 1 and max(held) - min(held) <= 1


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_each_tick_goes_to_exactly_one_shard(count: int) -> None:
    for after in range(-3, 12):
        for upto in range(after, after + 15):
            per_shard = [ticks(shard, count, after, upto) for shard in range(count)]
            assert sum(per_shard) == upto - after
            assert all(n >= 0 for n in per_shard)
            # Round-robin: no shard gets more than one tick ahead of another.
            assert max(per_shard) - min(per_shard) <= 1
