"""The notebooks are committed without outputs, and the README links each one.

The notebooks themselves run top to bottom as tests too (nbmake, ``testpaths`` in
``pyproject.toml``), on the small budget of ``LRGYM_QUICK=1``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = (
    "01_quickstart.ipynb",
    "02_bring_your_own_agent.ipynb",
    "03_learn_a_controller_with_reps.ipynb",
    "04_reproduce_the_paper.ipynb",
    "05_your_training_loop.ipynb",
)


def output_problems(notebook: dict[str, Any]) -> list[str]:
    """What a committed notebook must not carry: outputs and execution counts of code cells."""
    problems = []
    for k, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {k} has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {k} has execution_count {cell['execution_count']}")
    return problems


def test_every_notebook_of_the_issue_is_there() -> None:
    assert [p.name for p in NOTEBOOKS] == list(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebooks_carry_no_outputs(path: Path) -> None:
    problems = output_problems(json.loads(path.read_text()))
    assert not problems, (
        f"{path.name}: {'; '.join(problems)}. Clear the outputs before committing "
        f"(Jupyter: Edit > Clear Outputs of All Cells, then save; or `jupyter nbconvert "
        f"--clear-output --inplace notebooks/{path.name}`)"
    )


def test_the_output_check_catches_outputs_and_execution_counts() -> None:
    clean = {"cells": [{"cell_type": "code", "execution_count": None, "outputs": []}]}
    assert output_problems(clean) == []
    ran = {
        "cells": [
            {"cell_type": "markdown", "source": "text"},
            {"cell_type": "code", "execution_count": 3, "outputs": [{"output_type": "stream"}]},
        ]
    }
    assert output_problems(ran) == ["cell 1 has 1 output(s)", "cell 1 has execution_count 3"]


def test_the_readme_links_every_notebook_with_a_line_on_it() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        # the link, then its line (up to the next bullet or paragraph)
        link = re.search(rf"\]\(notebooks/{re.escape(path.name)}\)(.*?)(\n\*|\n\n)", readme, re.S)
        assert link, f"README.md does not link notebooks/{path.name}"
        assert len(link.group(1).strip(" :-\n")) > 20, f"say what {path.name} teaches"
