"""Small workspace helpers."""

from __future__ import annotations

from ctcd.workspace import log_tail


def test_log_tail_is_the_last_lines_on_one_line(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("starting\n  loading model  \nTraceback: boom\nValueError: bad model\n", encoding="utf-8")
    assert log_tail(log) == "loading model | Traceback: boom | ValueError: bad model"
    assert log_tail(log, lines=1) == "ValueError: bad model"
    assert log_tail(tmp_path / "missing.log") == "(no log)"
    log.write_text("x" * 5000, encoding="utf-8")
    assert len(log_tail(log)) == 600
