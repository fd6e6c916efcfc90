"""Reading the editable TOML configuration (playbook, segment rules) with located errors."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from churnguard.exceptions import ConfigError

__all__ = ["read_toml", "reject_unknown", "with_context"]

_T = TypeVar("_T")


def read_toml(path: str | os.PathLike[str] | None, default_name: str) -> tuple[dict[str, Any], str]:
    """Parse ``path``, or the packaged ``config/<default_name>``; return (data, source)."""
    if path is None:
        text = (files("churnguard") / "config" / default_name).read_text(encoding="utf-8")
        source = f"packaged config/{default_name}"
    else:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"config file '{p}' does not exist or is not a file. Pass the path of a TOML "
                f"file, or None for the packaged default (copy it from churnguard/config/"
                f"{default_name} to start your own)."
            )
        text = p.read_text(encoding="utf-8")
        source = str(p)
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML ({exc}); fix the syntax there.") from exc


def reject_unknown(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    """Refuse keys a table may not have (a typo must not be ignored silently)."""
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s) {unknown}; allowed keys are {sorted(allowed)}. "
            "Check the spelling or remove them."
        )


def with_context(where: str, build: Callable[..., _T], /, *args: Any) -> _T:
    """``build(*args)``, with any validation error located at ``where`` (file and table)."""
    # Config objects validate themselves without knowing where they come from;
    # prefix their message with the file and table so the user can find the line.
    try:
        return build(*args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
