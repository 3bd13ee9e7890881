"""The run's console: a terminal's width, ``$COLUMNS`` when set, else a log's 160 columns."""

import io

from agent.progress import LOG_WIDTH, console_for


def test_a_log_gets_160_columns_and_columns_wins_when_set(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert console_for(io.StringIO()).width == LOG_WIDTH == 160
    monkeypatch.setenv("COLUMNS", "")  # set but empty: not a width
    assert console_for(io.StringIO()).width == LOG_WIDTH
    monkeypatch.setenv("COLUMNS", "97")
    assert console_for(io.StringIO()).width == 97
