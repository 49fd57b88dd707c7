"""Prompts of the job specs."""
