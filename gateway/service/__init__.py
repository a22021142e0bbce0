"""Async orchestration: submission, dispatch with retries, ingestion, acknowledgement."""
