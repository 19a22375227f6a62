"""Utilities: data, transforms, optimisation, metrics, files, logging."""
