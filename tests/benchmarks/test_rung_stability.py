"""benchmarks/rung_stability.py, run as a user runs it (a subprocess), on a tiny MNIST-1D setting."""

from __future__ import annotations

import json
import math
import subprocess

from scipy.stats import kendalltau

from tests.benchmarks.runscript import run_script


def run(*args: str) -> subprocess.CompletedProcess:
    return run_script("rung_stability.py", *args)


def test_rung_tau_is_kendall_tau_of_the_rungs_prediction_against_the_held_out_truth(tmp_path):
    proc = run("--n-samples", "300", "--cells", "5", "--rungs", "low:1", "--top", "low:2",
               "--truth-learners", "2", "--out", str(tmp_path), "--png", str(tmp_path / "r.png"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(set(out["cells"])) == 5  # distinct cells of the walk
    assert len(out["truth"]) == 5 and all(0.0 <= t <= 2.0 for t in out["truth"])
    rows = {r["rung"]: r for r in out["rows"]}
    for name in ("low-1ep", "low-2ep"):
        expected = kendalltau(out["pred"][name], out["truth"])[0]
        assert math.isclose(rows[name]["tau"], expected, abs_tol=1e-12)
        lo, hi = rows[name]["tau_90"]
        assert lo <= hi
    # about 240 training samples at batch 128: one full batch per epoch (the trainer drops the
    # last, partial one)
    assert 128 <= out["n_train"] < 256
    assert (rows["low-1ep"]["steps"], rows["low-2ep"]["steps"]) == (1, 2)
    assert rows["low-2ep"]["top"] and not rows["low-1ep"]["top"]
    assert (tmp_path / "r.png").stat().st_size > 0
    # a second run reads every learner back from the cache: same figures
    again = json.loads(run("--n-samples", "300", "--cells", "5", "--rungs", "low:1", "--top", "low:2",
                           "--truth-learners", "2", "--out", str(tmp_path), "--json").stdout)
    assert again["pred"] == out["pred"] and again["truth"] == out["truth"]
    # --batch-size 32: 7 full batches per epoch of the same ~240 samples, trained anew into a
    # cache folder of its own (the batch-128 learners are not reused)
    small = json.loads(run("--n-samples", "300", "--cells", "5", "--rungs", "low:1", "--top", "low:2",
                           "--truth-learners", "2", "--batch-size", "32", "--out", str(tmp_path),
                           "--json").stdout)
    steps = {r["rung"]: r["steps"] for r in small["rows"]}
    assert steps == {"low-1ep": out["n_train"] // 32, "low-2ep": 2 * (out["n_train"] // 32)}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "mnist1d-n300-seed0", "mnist1d-n300-seed0-b32"]
    assert small["pred"] != out["pred"]


def test_bad_rung_is_refused_in_one_line_that_quotes_it(tmp_path):
    for args, needle in ((("--rungs", "low:x"), "'low:x'"),
                         (("--batch-size", "0"), "--batch-size: expected an integer >= 1, got '0'")):
        proc = run(*args, "--out", str(tmp_path))
        assert proc.returncode == 2
        assert needle in proc.stderr.strip().splitlines()[-1]
        assert not any(tmp_path.iterdir())


def test_malformed_baseline_is_refused_in_one_line_that_quotes_it(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"edge_1_0": "conv9x9"}')
    proc = run("--baseline", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'conv9x9'" in lines[0] and str(bad) in lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_flags_are_refused_in_one_line_that_quotes_them(tmp_path):
    (tmp_path / "f").write_text("x")
    for flags, quoted in ((("--n-samples", "-5"), "'-5'"), (("--n-samples", "0"), "'0'"),
                          (("--dataset", "foo"), "'foo'"), (("--seed", "-1"), "'-1'"),
                          (("--out", str(tmp_path / "f")), repr(str(tmp_path / "f")))):
        proc = run(*flags)
        assert proc.returncode == 2, flags
        assert "Traceback" not in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert quoted in last and flags[0] in last, last
