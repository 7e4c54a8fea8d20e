"""Makes the notebooks folder a package for pytest only: its conftest.py is then
``notebooks.conftest`` and does not shadow ``tests/conftest.py``."""
