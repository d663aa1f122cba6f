"""``run.sh`` and the command lines kept from before the library became :mod:`encore`."""
