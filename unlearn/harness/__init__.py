"""The harness: plans a grid, prepares each (forget set, seed) group once, runs and scores its cells, writes records.

The flow of one cell and the extension points (kinds, protocols, executors) are in docs/architecture.md.
Modules: `plan` (no torch), `workspace`, `kinds` (the Kind base and registry) and `classification`,
`cells`, `models`, `scoring`, `protocols/` (single, corrective, continual) and `grid`. The names below
import their module on first use, so `from unlearn.harness import plan_grid` loads no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Workspace": "workspace",
    "MethodChoice": "plan", "GridPlan": "plan", "choose_method": "plan", "plan_grid": "plan", "provides": "plan",
    "Kind": "kinds", "KINDS": "kinds", "kind_class": "kinds", "load_kind": "kinds", "Classification": "classification",
    "Cell": "cells", "CellGroup": "cells", "GroupSummary": "cells", "GridResult": "cells", "Outcome": "cells",
    "Unlearned": "cells",
    "Models": "models", "forgotten_classes": "models",
    "Scoring": "scoring",
    "PROTOCOLS": "protocols", "Protocol": "protocols",
    "Grid": "grid", "describe": "grid",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'unlearn.harness' has no attribute {name!r}")
    return getattr(importlib.import_module(f"unlearn.harness.{module}"), name)
