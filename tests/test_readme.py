"""The README's Python example runs as written (docs that rot are worse than none)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    # ```python blocks run here; ```py blocks need a Spark cluster or a team MLflow
    # server (tests/test_spark.py and tests/scoring/test_pyfunc.py cover that code).
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_quickstart_has_exactly_two_commands() -> None:
    section = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert [c.strip() for c in commands] == [
        "pip install . && churnguard demo",
        'python -m pip install -e ".[test,spark]" && python -m pytest',
    ]
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1].strip() in ci


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _python_blocks()
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    retention = namespace["result"].retention  # type: ignore[attr-defined]
    assert len(retention) == 2357 and retention["contact"].sum() <= 100
