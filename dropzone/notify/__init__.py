"""Telling people when a job ends: the outbox's notices delivered to webhooks and commands."""
