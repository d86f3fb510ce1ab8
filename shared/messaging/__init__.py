"""Messaging: task names and queues, the publisher, and read-only looks at the broker."""
