"""The batches domain (super.AI-compatible): apps process batches of inputs, one data
point per input.

Importing it registers the ``batch`` job type's preparer (reading an inputs file) and
planner; the executor, which calls the models, is the worker's
(:mod:`worker.executors.batches`).
"""

from shared.batches.service import BATCH, load_input_file, plan_batch
from shared.engine.registry import register_planner, register_preparer

register_planner(BATCH, plan_batch)
register_preparer(BATCH, load_input_file)
