"""Executors: how each job type's executions are done. Importing this package registers
every executor module in it (a new job type adds a module here, nothing else)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
