"""Read an A3sfile from disk and check it: the one way from a path to a DevConfig."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from a3s_dev.config.model import DevConfig
from a3s_dev.config.validate import Diagnostic, Report, Severity, check_text
from a3s_dev.errors import ConfigError


def load_with_report(path: Path, *, environ: Mapping[str, str] | None = None, order: bool = True) -> Report:
    """Parse and check `path`; the report holds every diagnostic and the config when there is no
    error, and with `order` the start order."""
    path = Path(path).absolute()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")  # an editor's BOM is not a syntax error
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"not UTF-8 text: byte 0x{data[exc.start]:02x} at column {column} (save the file as UTF-8)"
        return Report(path, (Diagnostic(Severity.ERROR, message, line),))
    return check_text(text, path, os.environ if environ is None else environ, order=order)


def load(path: Path, *, environ: Mapping[str, str] | None = None) -> DevConfig:
    """Parse and check `path`; raise ConfigError listing every error line, else return the config."""
    report = load_with_report(path, environ=environ, order=False)
    if report.config is None:
        raise ConfigError("\n".join(report.lines(errors_only=True)))
    return report.config
