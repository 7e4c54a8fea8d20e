"""The test suite runs every notebook top to bottom (nbmake) on its small budget.

The notebooks read ``LRGYM_QUICK``: set here to ``1`` unless it is set already, so
``LRGYM_QUICK=0 python -m pytest notebooks/NAME.ipynb`` runs a notebook on its full budget.

Notebooks 01, 04 and 05 train on MNIST, found in ``../shared/data`` or ``data/`` (the places
the notebooks look) or ``LRGYM_DATA_DIR``. Where none of them has it (a fresh clone on a
machine without the files, offline), the notebooks run on fake MNIST files in torchvision's
layout, as the tests do (``tests/helpers.py``): their quick budget checks the code, not the
numbers. The kernels run with one torch thread (``OMP_NUM_THREADS=1``), as every test does.
"""

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("LRGYM_QUICK", "1")
os.environ["OMP_NUM_THREADS"] = "1"  # the notebook kernels (subprocesses) inherit it

REPOSITORY = Path(__file__).resolve().parent.parent


def _has_mnist(root: Path) -> bool:
    return (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def _fake_mnist_root() -> str:
    spec = importlib.util.spec_from_file_location(
        "lrgym_tests_helpers", REPOSITORY / "tests" / "helpers.py"
    )
    assert spec is not None and spec.loader is not None
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    root = Path(tempfile.mkdtemp(prefix="lrgym-fake-mnist-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    # enough images for the notebooks' quick budgets (evaluation samples of 1000 - 2000)
    helpers.write_fake_mnist(root, "MNIST", n_train=20000, n_test=2000)
    return str(root)


_places = [REPOSITORY.parent / "shared" / "data", REPOSITORY / "data"]
if os.environ.get("LRGYM_DATA_DIR"):
    _places.append(Path(os.environ["LRGYM_DATA_DIR"]))
if not any(_has_mnist(place) for place in _places):
    os.environ["LRGYM_DATA_DIR"] = _fake_mnist_root()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every notebook is a ``slow`` test (a minute or more): ``-m "not slow"`` leaves them out."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
