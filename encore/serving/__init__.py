"""Encore's recommendation service (issue #13): serves the registered champion over HTTP.

Start it with ``python -m encore.serving`` (or ``make serve``); docs/serving.md, "Serving".
"""
