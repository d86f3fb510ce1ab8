"""The execution engine, the same for every job type.

A job type is a spec, discovered through an entry point: a planner (the job's items), an
executor (the work of a group of claimed executions) and the rest it needs; the engine
does everything else:

- ``jobs``       accept a job (commit, then publish its fan-out), read it, cancel it;
- ``fanout``     write a job's executions in chunks, idempotently, stopping at a cancel;
- ``dispatch``   hand executions to the broker in groups, fairly and bounded;
- ``claim``      lease a group with one guarded UPDATE;
- ``finish``     record outcomes in batches, with the counters, in one transaction;
- ``counters``   the job's counters and the status they imply;
- ``recovery``   the sweep: dead workers' leases, lost messages, exhausted attempts;
- ``workers``    worker processes and their heartbeats;
- ``outbox``     the job-finished events and their consumers;
- ``periodic``   recurring slots: when each is due, claimed and run once, for the
                 kinds job types declare;
- ``job_types``  job types: their specs, discovered (entry points ``jobyard.job_types``).

Nothing here names a job type's fields: an execution's work is its ``item`` (JSON).
"""
