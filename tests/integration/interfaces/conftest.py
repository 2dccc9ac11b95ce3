from __future__ import annotations

import sys
from pathlib import Path

# Share the unit tests' helpers (IG samples, recording writer) without making tests a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "interfaces"))
