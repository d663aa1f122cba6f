"""Readable reports over finished runs: number formatting, the registry's version card and
the helpers the notebooks call (the notebooks themselves hold no logic)."""
