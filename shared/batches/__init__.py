"""The batches domain (super.AI-compatible): apps process batches of inputs, one data
point per input.

Its job type, ``batch``, is :data:`shared.batches.job_type.SPEC` (an entry point of the
``jobyard.job_types`` group).
"""
