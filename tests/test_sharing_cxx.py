"""C++: containers on sameprocess::allocator built by one program, used and
destroyed by others after the builder exited."""
from __future__ import annotations

import pytest

from sameprocess import _sharing
from _sharing_util import merged, run


@pytest.fixture(scope="module")
def rt_map(build):
    return build("rt_map.cpp")


def test_unordered_map_outlives_its_builder(space, rt_map):
    before = _sharing.stats()["used_blocks"]
    built = merged(run(space, rt_map, "build", "words", "50000").stdout)
    assert built["built"] == "50000"
    assert _sharing.stats()["used_blocks"] > before + 50000  # nodes, strings, buckets: still there
    used = merged(run(space, rt_map, "use", "words").stdout)  # read, check, modify
    assert used == {"checked": "50000", "size": "25001", "vector": "1000"}
    _sharing.heap_check()
    assert merged(run(space, rt_map, "destroy", "words").stdout)["destroyed"] == "1"
    assert _sharing.stats()["used_blocks"] == before  # every block freed by the third program
    _sharing.heap_check()


def test_the_allocator_is_stateless(space, rt_map):
    got = merged(run(space, rt_map, "traits", "-").stdout)
    assert got == {"empty": "1", "polymorphic": "0", "always_equal": "1", "trivially_copyable": "1"}


def test_a_missing_map_is_reported(space, rt_map):
    assert merged(run(space, rt_map, "use", "nothing-here", check=False).stdout) == {"missing": "1"}
