"""Cores and memory under container limits: cgroup files v1 and v2, the thread cap."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from churnguard import _resources
from churnguard._duckdb import connect
from churnguard._resources import THREADS_ENV, cgroup_cpu_limit, cgroup_memory_free_gb, cpu_budget
from churnguard.execution import _sizing


def _files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n", encoding="ascii")
    return root


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "150000 100000"}, 1.5),  # v2 quota
        ({"cpu.max": "max 100000"}, None),  # v2, no quota
        ({"cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"}, 2.0),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),  # v1 none
        ({}, None),  # no cgroup files at all (macOS, Windows)
    ],
)
def test_the_cpu_quota_is_read_from_either_cgroup_version(
    tmp_path: Path, files: dict[str, str], cores: float | None
) -> None:
    assert cgroup_cpu_limit(_files(tmp_path, files)) == cores


def test_a_quota_below_the_cores_bounds_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    one = _files(tmp_path / "one", {"cpu.max": "50000 100000"})  # half a core: one thread
    assert cpu_budget(root=one) == 1
    wide = _files(tmp_path / "wide", {"cpu.max": "6400000 100000"})  # 64 cores: affinity wins
    assert cpu_budget(root=wide) == _cores()
    assert cpu_budget(cap=1, root=wide) == 1


def test_the_thread_cap_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_resources, "_REPORTED", set())
    monkeypatch.setenv(THREADS_ENV, "1")
    assert cpu_budget(root=tmp_path) == 1
    con = connect()
    try:
        assert con.execute("SELECT current_setting('threads')").fetchall()[0][0] == 1
    finally:
        con.close()
    monkeypatch.setenv(THREADS_ENV, "two")
    with caplog.at_level(logging.WARNING, logger="churnguard._resources"):
        assert cpu_budget(root=tmp_path) == _cores()
        assert cpu_budget(root=tmp_path) == _cores()
    assert [r.getMessage() for r in caplog.records] == [
        "CHURNGUARD_THREADS='two' is not a whole number of threads; ignored"
    ]


@pytest.mark.parametrize(
    ("files", "free_gb"),
    [
        # v2: 4 GB limit, 3 GB used of which 1 GB is reclaimable file cache.
        (
            {
                "memory.max": "4000000000",
                "memory.current": "3000000000",
                "memory.stat": "anon 2000000000\ninactive_file 1000000000",
            },
            2.0,
        ),
        ({"memory.max": "max", "memory.current": "3000000000"}, None),
        (
            {
                "memory/memory.limit_in_bytes": "2000000000",
                "memory/memory.usage_in_bytes": "1500000000",
                "memory/memory.stat": "cache 600000000\ntotal_inactive_file 500000000",
            },
            1.0,
        ),
        ({"memory/memory.limit_in_bytes": "9223372036854771712"}, None),  # v1 unlimited
        ({}, None),
    ],
)
def test_the_memory_left_under_a_cgroup_limit(
    tmp_path: Path, files: dict[str, str], free_gb: float | None
) -> None:
    got = cgroup_memory_free_gb(_files(tmp_path, files))
    assert got == (None if free_gb is None else pytest.approx(free_gb))


def test_a_container_limit_makes_score_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host may have plenty free while the container has 0.5 GB left."""
    rows = 2_000_000
    monkeypatch.setattr(_sizing, "cgroup_memory_free_gb", lambda: None)
    host = _sizing.available_memory_gb()
    assert host is None or host < 3 or not _sizing.needs_partitions(rows)
    monkeypatch.setattr(_sizing, "cgroup_memory_free_gb", lambda: 0.5)
    assert _sizing.available_memory_gb() == pytest.approx(min(0.5, host or 0.5))
    assert _sizing.needs_partitions(rows)
