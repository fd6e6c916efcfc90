"""Cores and memory under container limits: cgroup files v1 and v2, the thread cap."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from churnguard import _resources
from churnguard._duckdb import connect
from churnguard._resources import (
    ARROW_POOL_ENV,
    NUMPY_HUGEPAGE_ENV,
    OPENMP_SPIN_ENV,
    OPENMP_WAIT_ENV,
    THREADS_ENV,
    cgroup_cpu_limit,
    cgroup_memory_free_gb,
    cpu_budget,
)
from churnguard.execution import _sizing


@pytest.fixture(autouse=True)
def _entry_point_variables_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    """What churnguard.cli.main() writes to the environment is undone after each test.

    monkeypatch restores only variables it has recorded: setting then deleting each one
    records it, as absent.
    """
    for name in (ARROW_POOL_ENV, NUMPY_HUGEPAGE_ENV, OPENMP_SPIN_ENV, OPENMP_WAIT_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


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
    assert cgroup_cpu_limit(_files(tmp_path, files), tmp_path / "no-self") == cores


def test_a_quota_on_a_parent_group_binds_the_process(tmp_path: Path) -> None:
    """A systemd slice or a pod: the limit sits above the process's own group."""
    v2 = _files(
        tmp_path / "v2",
        {
            "cgroup.controllers": "cpu memory",
            "pod/cpu.max": "250000 100000",
            "pod/app/cpu.max": "max 100000",
            "pod/memory.max": "3000000000",
            "pod/memory.current": "1000000000",
            "pod/app/memory.max": "max",
        },
    )
    self_v2 = _files(tmp_path, {"self-v2": "0::/pod/app"}) / "self-v2"
    assert cgroup_cpu_limit(v2, self_v2) == 2.5
    assert cgroup_memory_free_gb(v2, self_v2) == pytest.approx(2.0)
    v1 = _files(
        tmp_path / "v1",
        {
            "cpu/slice/cpu.cfs_quota_us": "-1",
            "cpu/slice/cpu.cfs_period_us": "100000",
            "cpu/cpu.cfs_quota_us": "100000",
            "cpu/cpu.cfs_period_us": "100000",
            "memory/slice/memory.limit_in_bytes": "9223372036854771712",
            "memory/memory.limit_in_bytes": "9223372036854771712",
        },
    )
    self_v1 = _files(tmp_path, {"self-v1": "4:memory:/slice\n2:cpu,cpuacct:/slice"}) / "self-v1"
    assert cgroup_cpu_limit(v1, self_v1) == 1.0
    assert cgroup_memory_free_gb(v1, self_v1) is None
    # A group path that this mount does not show (no cgroup namespace): the mount's own.
    hidden = _files(tmp_path, {"self-hidden": "0::/elsewhere/job"}) / "self-hidden"
    assert cgroup_cpu_limit(v2, hidden) is None


@pytest.mark.parametrize(
    "text", ["1" + "0" * 400 + " 100000", "abc 100000", "100000 0", "-5 100000", ""]
)
def test_malformed_cgroup_files_read_as_no_limit(tmp_path: Path, text: str) -> None:
    root = _files(tmp_path, {"cpu.max": text, "memory.max": text, "memory.current": text})
    assert cgroup_cpu_limit(root, tmp_path / "no-self") is None
    assert cpu_budget(root=root, self_file=tmp_path / "no-self") == _cores()
    assert cgroup_memory_free_gb(root, tmp_path / "no-self") in (None, 0.0)


def test_a_quota_below_the_cores_bounds_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    none = tmp_path / "no-self"
    one = _files(tmp_path / "one", {"cpu.max": "50000 100000"})  # half a core: one thread
    assert cpu_budget(root=one, self_file=none) == 1
    wide = _files(tmp_path / "wide", {"cpu.max": "6400000 100000"})  # 64 cores: affinity wins
    assert cpu_budget(root=wide, self_file=none) == _cores()
    assert cpu_budget(cap=1, root=wide, self_file=none) == 1


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
    got = cgroup_memory_free_gb(_files(tmp_path, files), tmp_path / "no-self")
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


def test_the_command_line_prefers_the_system_allocator_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import churnguard.cli as cli

    calls: list[str | None] = []
    monkeypatch.setattr(cli, "app", lambda: calls.append(os.environ.get(ARROW_POOL_ENV)))
    monkeypatch.setenv(ARROW_POOL_ENV, "")
    monkeypatch.setattr(sys, "argv", ["churnguard", "-v", "features", "-t", "x.csv"])
    cli.main()
    monkeypatch.delenv(ARROW_POOL_ENV)
    monkeypatch.setattr(sys, "argv", ["churnguard", "score", "-t", "x.csv", "-m", "m"])
    cli.main()
    monkeypatch.setenv(ARROW_POOL_ENV, "jemalloc")
    cli.main()
    assert calls == ["system", "system", "jemalloc"]


@pytest.mark.parametrize(
    "argv", [["train", "-t", "features.csv"], ["demo"], ["--log-format", "json", "train"], []]
)
def test_other_commands_keep_arrows_default_allocator(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    import churnguard.cli as cli

    calls: list[str | None] = []
    monkeypatch.setattr(cli, "app", lambda: calls.append(os.environ.get(ARROW_POOL_ENV)))
    monkeypatch.setattr(sys, "argv", ["churnguard", *argv])
    cli.main()
    assert calls == [None]


def test_the_entry_point_knows_every_command() -> None:
    import typer.main

    import churnguard.cli as cli

    assert set(typer.main.get_command(cli.app).commands) == cli.COMMANDS  # type: ignore[attr-defined]
    assert cli.SYSTEM_POOL_COMMANDS <= cli.COMMANDS


def test_the_command_line_imports_no_arrow_numpy_or_openmp_before_setting_them() -> None:
    # Arrow reads its allocator's name once, when pyarrow is imported; NumPy its huge-page
    # switch when imported; libgomp its spin count when LightGBM or scikit-learn loads it.
    code = (
        "import sys, churnguard.cli; "
        "print([m for m in ('pyarrow', 'numpy', 'lightgbm', 'sklearn') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "1000"),
        ({"GOMP_SPINCOUNT": "50"}, "50"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, None),
        ({"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": ""}, "1000"),
    ],
)
def test_the_command_line_lets_idle_openmp_threads_sleep_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str | None
) -> None:
    import churnguard.cli as cli

    calls: list[str | None] = []
    monkeypatch.setattr(cli, "app", lambda: calls.append(os.environ.get("GOMP_SPINCOUNT")))
    monkeypatch.setattr(sys, "argv", ["churnguard", "train", "-t", "x.csv"])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cli.main()
    assert calls == [expected]


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["features", "-t", "x.csv"], {}, "0"),
        (["train", "-t", "x.csv"], {}, "0"),
        ([], {}, "0"),
        (["demo"], {NUMPY_HUGEPAGE_ENV: "1"}, "1"),
        (["score"], {NUMPY_HUGEPAGE_ENV: ""}, "0"),  # NumPy fails to import with ""
    ],
)
def test_the_command_line_keeps_numpy_off_huge_pages_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], expected: str
) -> None:
    import churnguard.cli as cli

    calls: list[str | None] = []
    monkeypatch.setattr(cli, "app", lambda: calls.append(os.environ.get(NUMPY_HUGEPAGE_ENV)))
    monkeypatch.setattr(sys, "argv", ["churnguard", *argv])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cli.main()
    assert calls == [expected]


def test_numpy_reads_the_huge_page_switch_the_entry_point_sets() -> None:
    # The variable only works if NumPy reads it: a fresh process that imports NumPy after
    # main() has run the setting (app replaced) sees huge pages off.
    code = (
        "import sys, churnguard.cli as cli; cli.app = lambda: None\n"
        "sys.argv = ['churnguard', 'features']; cli.main()\n"
        "import importlib, numpy\n"
        "get = None\n"
        "for name in ('numpy._core.multiarray', 'numpy.core.multiarray'):\n"
        "    try:\n"
        "        get = getattr(importlib.import_module(name), '_get_madvise_hugepage', None)\n"
        "    except ImportError:\n"
        "        continue\n"
        "    if get is not None:\n"
        "        break\n"
        "print('unknown' if get is None else get())"
    )
    env = {k: v for k, v in os.environ.items() if k != NUMPY_HUGEPAGE_ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "unknown":
        pytest.skip("this NumPy does not say whether it asks for huge pages")
    assert done.stdout.strip() == "False"
