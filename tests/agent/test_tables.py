"""The tables a run prints and writes (live summary, report, replay), on the real entry points."""

from pathlib import Path

from tests.agent.runcli import events_of, run_cli


def test_summary_table_in_a_log_keeps_every_word_whole(tiny_run):
    """Off a terminal rich would wrap the table at 80 columns and cut its words ("behi…"); the
    run's console writes logs 160 columns wide, so every row is one line and nothing is cut."""
    run_dir, proc = tiny_run
    lines = proc.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if "search finished" in line)
    rows = [line for line in lines[start:] if line.startswith("│")]
    decided = [e for e in events_of(run_dir) if e["event"] == "decision"]
    assert len(rows) == 1 + len(decided), rows  # the baseline and one line per decision
    assert not any("…" in line for line in rows), rows
    assert max(len(line) for line in lines[start:]) <= 160
    assert sum("★" in line for line in rows) == 1  # the final baseline, marked


def test_report_cli_and_bad_run_folder(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    assert run_cli("agent.report", run_dir).stdout.strip().endswith("report.md")
    bad = run_cli("agent.report", tmp_path, check=False)
    assert bad.returncode == 2 and "not a readable run" in bad.stderr
    (tmp_path / "trajectory.jsonl").touch()  # a log with no run in it: no report of Nones
    empty = run_cli("agent.report", tmp_path, check=False)
    assert empty.returncode == 2 and empty.stderr.strip() == (
        f"error: {tmp_path}: not a readable run (trajectory.jsonl holds no run_started event)")
    assert not (tmp_path / "report").exists()


def test_a_single_fidelity_run_names_rows_by_id_alone_in_every_table(tiny_run):
    """`id @ rung` only where the schedule has several rungs (`agent.rule.row_name`): the live
    summary, the report and the replay of a one-rung run name each decision by its id alone,
    though every logged decision names its fidelity."""
    run_dir, proc = tiny_run
    decisions = [e for e in events_of(run_dir) if e["event"] == "decision"]
    assert decisions and all(d["fidelity"] for d in decisions)
    decided = sorted(d["proposal_id"] for d in decisions)
    lines = proc.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if "search finished" in line)
    summary = [line.split("│")[1].strip() for line in lines[start:] if line.startswith("│")]
    assert sorted(summary) == sorted(["baseline", *decided]), summary
    report = Path(run_cli("agent.report", run_dir).stdout.strip()).read_text().splitlines()
    head = next(i for i, line in enumerate(report) if line.startswith("| proposal | vs |"))
    rows = [line.split("|")[1].strip() for line in report[head + 2:] if line.startswith("| ")]
    assert sorted(rows[:len(decisions)]) == decided, rows
    replay = run_cli("agent.replay", run_dir, env={"COLUMNS": ""}).stdout.splitlines()
    cells = [line.split("│")[1].strip() for line in replay if line.startswith("│")]
    assert sorted(cells) == decided, cells
