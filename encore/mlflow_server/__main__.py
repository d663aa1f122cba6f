"""``python -m encore.mlflow_server``: the team server's command line (:mod:`.cli`)."""

import sys

from encore.mlflow_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
