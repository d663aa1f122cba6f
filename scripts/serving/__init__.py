"""``python -m scripts.serving``: kept for existing commands; the service is :mod:`encore.serving`."""
