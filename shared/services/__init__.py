"""Domain services: the business logic that the API and the worker both call."""
