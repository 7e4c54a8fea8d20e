"""The test suite runs every notebook top to bottom (nbmake) on its small budget.

The notebooks read ``LRGYM_QUICK``: set here to ``1`` unless it is set already, so
``LRGYM_QUICK=0 python -m pytest notebooks/NAME.ipynb`` runs a notebook on its full budget.
"""

import os

os.environ.setdefault("LRGYM_QUICK", "1")
