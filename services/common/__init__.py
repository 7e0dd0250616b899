"""Pieces both services need, written once: settings, errors, JSON, logging, metrics, lifecycle."""
