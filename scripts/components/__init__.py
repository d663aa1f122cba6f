"""Command lines of the pipeline components; each component's code is in :mod:`encore.components`."""
