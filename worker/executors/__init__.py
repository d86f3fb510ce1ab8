"""Executors: how each of jobyard's own job types' executions are done. Each module
holds one ``EXECUTOR``, which its job type's spec names by reference
(:mod:`shared.engine.job_types`); the worker loads it when it starts."""
