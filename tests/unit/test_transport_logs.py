"""Run logs: the file per run, its formats, and redaction of every registered Secret."""

from __future__ import annotations

import io
import json
import logging
import stat
from datetime import UTC, datetime

from kubeforge.logs import console_handler, open_run_log
from kubeforge.model.secret import Secret
from kubeforge.transport import Command, LocalTransport

log = logging.getLogger("kubeforge.test")


def test_run_log_lives_in_a_timestamped_directory_named_after_the_command(tmp_path):
    when = datetime(2026, 11, 22, 7, 45, 3, tzinfo=UTC)
    with open_run_log(tmp_path, "etcd backup", now=when) as run:
        log.info("hello", extra={"host": "etcd-1"})
    assert run.dir == tmp_path / "runs" / "20261122T074503Z-etcd-backup"
    assert run.path == run.dir / "kubeforge.log"
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o600
    line = run.path.read_text().strip()
    assert line.startswith("2026-") and line.endswith(" INFO [etcd-1] hello")


def test_two_runs_in_the_same_second_get_separate_directories(tmp_path):
    when = datetime(2026, 1, 1, tzinfo=UTC)
    with open_run_log(tmp_path, "up", now=when) as a, open_run_log(tmp_path, "up", now=when) as b:
        pass
    assert a.dir != b.dir


def test_the_log_file_records_debug_lines_of_every_command(tmp_path):
    with open_run_log(tmp_path, "up") as run:
        LocalTransport(host="cp-1").run(Command(argv=["true"]))
    assert "DEBUG [cp-1] true -> exit 0 in" in run.path.read_text()


def test_a_secret_is_never_written_to_the_log_even_when_it_leaks_into_a_message(tmp_path):
    token = Secret("abcdef.0123456789abcdef")
    with open_run_log(tmp_path, "up") as run:
        LocalTransport(host="cp-1").run(
            Command(script='echo "$T" > /dev/null', env={"T": token}, stdin=Secret("stdin-secret-value"))
        )
        log.info("joining with token %s", token.reveal(), extra={"host": "w-1"})
        try:
            raise RuntimeError(f"bad token {token.reveal()}")
        except RuntimeError:
            log.exception("failed")
    text = run.path.read_text()
    assert "joining with token ***" in text
    assert "bad token ***" in text
    assert token.reveal() not in text
    assert "stdin-secret-value" not in text


def test_json_lines_format_has_time_level_host_and_message(tmp_path):
    with open_run_log(tmp_path, "up", log_format="json") as run:
        log.warning("slow disk %s", Secret("sekrit-value-1").reveal(), extra={"host": "etcd-2"})
    doc = json.loads(run.path.read_text().splitlines()[-1])
    assert doc["level"] == "warning" and doc["host"] == "etcd-2"
    assert doc["message"] == "slow disk ***"


def test_console_lines_are_prefixed_with_the_host(tmp_path):
    out = io.StringIO()
    with open_run_log(tmp_path, "up", console=console_handler(out)):
        log.info("kubelet restarted", extra={"host": "cp-1"})
        log.debug("not on the console")
        log.warning("clock skew 2s")
    assert out.getvalue().splitlines() == ["[cp-1] kubelet restarted", "warning: clock skew 2s"]


def test_closing_the_run_log_detaches_its_handlers(tmp_path):
    with open_run_log(tmp_path, "up") as run:
        pass
    log.info("after close")
    assert "after close" not in run.path.read_text()
