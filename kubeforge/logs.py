"""Run logs: a full debug log file per run, a per-host console format, and secret redaction.

Every record goes through ``RedactingFilter`` and a redacting formatter on every handler, so a
Secret value that leaks into a message, an argument or a traceback is replaced with ``***``. The
Secret type keeps secrets out of messages in the first place; this is the second line of defence.

Records may carry ``host`` (``log.debug(..., extra={"host": name})``); lines show it as ``[cp-1]``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from kubeforge.model.files import private_dir
from kubeforge.model.secret import redact

ROOT_LOGGER = "kubeforge"
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(host)s] %(message)s"


class RedactingFilter(logging.Filter):
    """Replace registered Secret values in the message (after %-formatting) and default ``host``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "host"):
            record.host = "-"
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class TextFormatter(logging.Formatter):
    """``time level [host] message``, one line per record (tracebacks follow, redacted)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = datetime.fromtimestamp(record.created, tz=UTC)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, host, logger, message (and exception text)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "host": getattr(record, "host", "-"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(doc, ensure_ascii=False))


class ConsoleFormatter(logging.Formatter):
    """``[cp-1] message`` for host records, the bare message otherwise; warnings say so."""

    def format(self, record: logging.LogRecord) -> str:
        host = getattr(record, "host", "-")
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        if host and host != "-":
            text = f"[{host}] {text}"
        if record.exc_info and record.levelno >= logging.ERROR:
            text += "\n" + self.formatException(record.exc_info)
        return redact(text)


def formatter_for(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"log format must be text or json, not {log_format!r}")


def console_handler(stream: IO[str] | None = None, *, level: int = logging.INFO, log_format: str = "console") -> logging.Handler:
    """A handler for the terminal: ``[cp-1] ...`` lines (or JSON lines with ``log_format="json"``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    handler.addFilter(RedactingFilter())
    return handler


@dataclass
class RunLog:
    """The records of one run: ``dir`` is ``runs/<UTC time>-<command>/``, ``path`` its log file."""

    dir: Path
    path: Path
    handlers: list[logging.Handler] = field(default_factory=list)

    def add_handler(self, handler: logging.Handler) -> None:
        handler.addFilter(RedactingFilter())
        logging.getLogger(ROOT_LOGGER).addHandler(handler)
        self.handlers.append(handler)

    def close(self) -> None:
        logger = logging.getLogger(ROOT_LOGGER)
        for h in self.handlers:
            logger.removeHandler(h)
            h.close()
        self.handlers.clear()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _run_dir(runs: Path, command_name: str, now: datetime) -> Path:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in command_name) or "run"
    base = runs / f"{stamp}-{safe}"
    candidate, n = base, 1
    while True:
        try:
            private_dir(candidate, exist_ok=False)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}.{n}")


def open_run_log(
    cluster_state_dir: Path,
    command_name: str,
    *,
    log_format: str = "text",
    console: logging.Handler | None = None,
    now: datetime | None = None,
) -> RunLog:
    """Create ``<state dir>/runs/<UTC time>-<command>/kubeforge.log`` and log every kubeforge record
    (debug and up) into it; ``console`` (see ``console_handler``) is attached too when given.

    The file is 0600: it names hosts, paths and commands even when secrets are redacted.
    """
    run_dir = _run_dir(Path(cluster_state_dir) / "runs", command_name, now or datetime.now(UTC))
    path = run_dir / ("kubeforge.jsonl" if log_format == "json" else "kubeforge.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(formatter_for(log_format))
    run_log = RunLog(dir=run_dir, path=path)
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(logging.DEBUG)
    run_log.add_handler(file_handler)
    if console is not None:
        run_log.add_handler(console)
    return run_log
