"""The benchmark still runs (its numbers are not asserted: no timed
assertions in tests)."""

from __future__ import annotations

import pytest

from eva_hub import bench
from eva_hub.codec import CodecName


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("codec", ["msgpack", "json"])
async def test_bench_runs(codec: CodecName, compact: bool) -> None:
    result = await bench.run(2000, codec, 1, compact=compact)
    assert result["best"] > 0 and result["bytes_per_frame"] > 50
