"""Delivery: the outbox drained through channels, under each channel's sending policy (rate limits,
quiet hours, retries)."""
