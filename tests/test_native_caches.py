"""lrgym.native_caches: importing lrgym bounds oneDNN's primitive cache; a user's setting wins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrgym.native_caches import CACHE_CAPACITY, CAPACITY_VARIABLES, bound_native_caches

ALL_VARIABLES = [name for names in CAPACITY_VARIABLES for name in names]

# A conv of one shape, then CACHE_CAPACITY convs of other shapes, then the first shape again:
# oneDNN's verbose log says whether that last primitive came from its cache.
EVICTION = f"""
import lrgym, torch
x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
with torch.no_grad():
    for out in [1, *range(2, {CACHE_CAPACITY} + 3), 1]:
        torch.nn.Conv2d(3, out, 3).to(memory_format=torch.channels_last)(x)
"""


@pytest.fixture
def no_capacities(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_capacities")
def test_bound_native_caches_sets_every_capacity() -> None:
    assert bound_native_caches() == {
        "ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(CACHE_CAPACITY),
        "LRU_CACHE_CAPACITY": str(CACHE_CAPACITY),
    }
    assert os.environ["LRU_CACHE_CAPACITY"] == str(CACHE_CAPACITY)
    assert bound_native_caches(7) == {}  # set already: kept


@pytest.mark.usefixtures("no_capacities")
def test_bound_native_caches_keeps_a_users_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNNL_PRIMITIVE_CACHE_CAPACITY", "5")  # oneDNN's older name
    assert bound_native_caches() == {"LRU_CACHE_CAPACITY": str(CACHE_CAPACITY)}
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ
    assert os.environ["DNNL_PRIMITIVE_CACHE_CAPACITY"] == "5"


def _cache_hits(capacity: str | None) -> int:
    """Convolution primitives oneDNN took from its cache in the EVICTION script."""
    environment = {k: v for k, v in os.environ.items() if k not in ALL_VARIABLES}
    environment.update(ONEDNN_VERBOSE="profile_create", OMP_NUM_THREADS="1")
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    if capacity is not None:
        environment["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = capacity
    done = subprocess.run(
        [sys.executable, "-c", EVICTION],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        check=True,
    )
    lines = done.stdout.splitlines()
    if not any("create:cache_miss" in line for line in lines):
        pytest.skip("this torch build's oneDNN does not log primitive creation")
    return sum("create:cache_hit" in line and ",convolution," in line for line in lines)


@pytest.mark.slow
def test_importing_lrgym_bounds_onednns_primitive_cache() -> None:
    assert _cache_hits(None) == 0  # evicted: lrgym's capacity is in force
    assert _cache_hits("1024") == 1  # the user's capacity: the first primitive is still cached
