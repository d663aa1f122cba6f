"""Command-line entry points and the pipeline script of a checkout; the library is :mod:`encore`."""
