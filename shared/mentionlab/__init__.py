"""The AI-visibility domain (Mentionlab): projects, queries, AI runs, cached jobs, schedules.

Its job type, ``ai_queries``, is :data:`shared.mentionlab.job_type.SPEC` (an entry point of
the ``jobyard.job_types`` group).
"""
