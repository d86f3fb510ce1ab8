"""Accounts: organisations, users, memberships and their credentials."""
