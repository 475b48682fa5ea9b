"""Benchmarks: build, personalisation and sending, each against a real reference measured in the same run."""
