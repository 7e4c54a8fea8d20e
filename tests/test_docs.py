"""The documentation site's sources: every public name has a place in the API reference.
(``mkdocs build --strict`` in ``.ci/run`` checks links and the references themselves.)"""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import lrgym
import lrgym_agents

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"


def test_every_public_name_of_lrgym_is_in_the_api_page_of_the_package():
    page = (API / "lrgym.md").read_text()
    # a row of the page's tables: a linked name, or a plain one (``__version__``)
    listed = set(re.findall(r"^\| \[?`([A-Za-z_][A-Za-z0-9_]*)`", page, flags=re.MULTILINE))
    missing = sorted(set(lrgym.__all__) - listed)
    assert not missing, f"add these names of lrgym.__all__ to docs/api/lrgym.md: {missing}"


def test_every_module_of_the_learners_package_is_in_the_api_reference():
    text = "\n".join(p.read_text() for p in API.glob("*.md"))
    documented = set(re.findall(r"^::: ([\w.]+)", text, flags=re.MULTILINE))
    modules = {
        m.name
        for m in pkgutil.walk_packages(lrgym_agents.__path__, "lrgym_agents.")
        if not m.name.rsplit(".", 1)[-1].startswith("_")
    }
    # a module counts when it, or a package above it, is rendered with its submodules
    missing = sorted(
        m for m in modules if not any(m == d or m.startswith(d + ".") for d in documented)
    )
    assert not missing, f"add these modules to docs/api/: {missing}"
