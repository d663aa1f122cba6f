"""Tooling of the team MLflow tracking server (PostgreSQL backend store, artifacts proxied to S3).

One module per job: :mod:`.settings` (``.env``), :mod:`.preflight` (checks before start),
:mod:`.schema` (the database schema), :mod:`.operations` (health wait, ``gc``),
:mod:`.auth_config` and :mod:`.auth_admin` (the auth app's store and config; users and
grants), :mod:`.auth_plugin` (the hook the server process itself runs) and one command line,
``python -m encore.mlflow_server`` (:mod:`.cli`). Nothing is imported here: the server
process loads this package on its way to :mod:`.auth_plugin`, and should load nothing else.
"""
