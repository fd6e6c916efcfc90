"""The notebooks in notebooks/: committed without outputs, and run top to bottom without error.

Each notebook runs in a fresh ``python3`` kernel whose spec is written to a temporary folder
and points at this interpreter, so the test needs no ``jupyter kernelspec install`` on a fresh
machine and cannot pick up a stale user-wide spec from another environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient
from nbformat import NotebookNode

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 600


def _code_cells(nb: NotebookNode) -> list[NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_notebooks_folder_is_not_empty() -> None:
    # Guards the parametrised tests below against silently running on nothing.
    assert NOTEBOOKS, f"no notebook found in {REPO / 'notebooks'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        cell.get("id", str(k))
        for k, cell in enumerate(_code_cells(nb))
        if cell.outputs or cell.execution_count is not None
    ]
    assert not dirty, (
        f"{path.name} has outputs or execution counts in code cells {dirty}; commit notebooks "
        f"clean: `jupyter nbconvert --clear-output --inplace notebooks/{path.name}`."
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_without_errors(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    share = tmp_path / "jupyter"
    write_kernel_spec(share / "kernels" / "python3")  # argv: this interpreter, ipykernel
    monkeypatch.setenv("JUPYTER_PATH", str(share))  # searched before user and system specs
    # The kernel imports this checkout even when churnguard is not pip-installed.
    pythonpath = [str(REPO), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in pythonpath if p))
    # The notebook's temporary folders (model, report) land under tmp_path and are cleaned up.
    (scratch := tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    (cwd := tmp_path / "cwd").mkdir()

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=180,  # a loaded CI machine can be slow to start the kernel
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()  # raises CellExecutionError, with the traceback, at the first failing cell

    cells = _code_cells(nb)
    errors = [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    # A cell that shows a plot must display an image: a library switching matplotlib to a
    # non-interactive backend would otherwise drop every figure without an error.
    blind = [
        cell.get("id")
        for cell in cells
        if "plt.show()" in cell.source
        and not any("image/png" in o.get("data", {}) for o in cell.outputs)
    ]
    assert not blind, f"cells {blind} call plt.show() but displayed no image"
    assert sorted(p.name for p in cwd.iterdir()) == [], "notebooks must not write to the cwd"
