"""The domain packages; importing this registers every job type and outbox consumer.

Every process that writes job transitions (the API cancels, workers finish) imports it, so
each ``job.finished`` event is written for every consumer, whichever process ends the job.
"""

import shared.batches
import shared.kb
import shared.mentionlab  # noqa: F401

DOMAINS = ("mentionlab", "batches", "kb")
