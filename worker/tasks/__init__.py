"""Thin Celery tasks: parse the arguments, call a service, log the outcome."""
