from __future__ import annotations

import sys
from pathlib import Path

# schemas.py (this folder) and serving_support.py (tests/serving) are imported by module name
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
