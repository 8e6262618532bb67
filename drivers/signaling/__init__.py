"""Signaling: per-channel/per-span state machines that turn line signals into call events."""
