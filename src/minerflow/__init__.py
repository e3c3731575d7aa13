"""minerflow: the machine-learning step of particle-physics analyses.

One engine runs sampling -> training -> evaluation -> plot, step by step from the command
line or as one law workflow, with every run tracked in MLflow. Heavy libraries (torch, law,
mlflow) are imported inside the modules that need them, so ``import minerflow`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__"]

# law resolves `law run minerflow.<Task>` as getattr(minerflow, "<Task>"); the task modules
# are imported only then, so importing the package never pulls in law or luigi.
_TASK_MODULES = ("minerflow.tasks.lfi", "minerflow.tasks.ml")


def __getattr__(name: str) -> Any:
    if name[:1].isupper():
        for module_name in _TASK_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name != module_name:
                    raise
                continue
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module 'minerflow' has no attribute {name!r}")
