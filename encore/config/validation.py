"""How a configuration problem is reported: :class:`ConfigError`, YAML files, pydantic errors.

Apart from :mod:`encore.config.experiment` (the experiment model, which imports every
generator kind) so that what only reads settings - the Spark session, the tracking client,
the serving process, the MLflow-server tooling - reports bad input the same way without
importing the training code.
"""

from __future__ import annotations

from collections.abc import Container
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

KIND_TAG = "kind="
"""Prefix of the union tag pydantic puts in error locations; stripped from messages."""
IMPORTED = "imported"
"""The union member of a user's own ``package.module:Name`` (kinds and data sources)."""


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key path."""


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; ConfigError names the file otherwise."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at byte offset "
                          f"{exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def key_path(loc: tuple[int | str, ...], data: Any = None) -> str:
    """The config key of a pydantic error location, without validator and union-tag parts. With
    the validated ``data``, a part that names no key of it (the tag of a union chosen by a value,
    such as the split's ``per_user``: above the last part, or the last when it is the ``kind``) is
    left out too."""
    parts = [p for p in loc if not str(p).startswith(("function-", KIND_TAG))]
    kept = []
    for depth, part in enumerate(parts):
        if isinstance(data, dict) and part not in data and (depth < len(parts) - 1 or data.get("kind") == part):
            continue  # a union tag: the key below it is in this mapping, or it is the mapping's kind
        kept.append(part)
        data = data.get(part) if isinstance(data, dict) else None
    return ".".join(str(p) for p in kept)


def format_validation_error(exc: ValidationError, source: str, what: str = "configuration",
                            data: Any = None) -> str:
    """``invalid <what> (<source>): <key>: <problem>``: one line, or a line per problem below the
    first when there are several; keys from :func:`key_path` (with ``data``, the validated input)."""
    problems = []
    for err in exc.errors():
        path = key_path(err["loc"], data)
        # A check of a whole section names the values it rejects: the section as the input adds
        # nothing (nor does a long value).
        section_check = err["type"] == "value_error" and isinstance(err.get("input"), dict)
        shown = repr(err["input"]) if "input" in err and not section_check else ""
        got = f" (got {shown})" if shown and len(shown) <= 300 else ""
        # A check over the whole file has no location; its message names the keys itself.
        problems.append(f"{path}: {error_message(err)}{got}" if path else f"{error_message(err)}{got}")
    head = f"invalid {what} ({source}):"
    return f"{head} {problems[0]}" if len(problems) == 1 else "\n  ".join([head, *problems])


def error_message(err: Any) -> str:
    """Pydantic's message without the "Value error, " it puts before a validator's own words."""
    return str(err["msg"]).removeprefix("Value error, ")


def rejected_settings(exc: ValidationError) -> str:
    """``key: message; key: message``: why a user's class rejected the settings given to it."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {error_message(e)}" for e in exc.errors())


def kind_tag(value: Any, builtin: Container[str]) -> str | None:
    """The union tag of a settings mapping (or model) chosen by its ``kind``: the built-in member of
    that name, the imported member for anything else, None (pydantic: "needs a kind") without one."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    if not isinstance(kind, str):
        return None
    return f"{KIND_TAG}{kind if kind in builtin else IMPORTED}"
