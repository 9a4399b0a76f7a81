"""Dagster wiring: assets, checks, jobs, schedules and sensors over the plain engines."""
