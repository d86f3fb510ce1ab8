"""Knowledge-base sync (Smart DB / MindsDB-compatible): source databases, knowledge bases
and the jobs that sync one into the other on their schedule.

Its job type, ``kb_sync``, is :data:`shared.kb.job_type.SPEC` (an entry point of the
``jobyard.job_types`` group).
"""
