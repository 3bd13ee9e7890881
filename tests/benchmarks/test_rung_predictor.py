"""benchmarks/rung_predictor.py: the promotion scores, compared on held-out cells only."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
from scipy.stats import kendalltau

from tests.benchmarks.runscript import ROOT, run_script

sys.path.insert(0, str(ROOT / "benchmarks"))

from rung_predictor import GRUScore  # noqa: E402  (a benchmark module, not a package)

from evaluators.results import Curves, EvalResult, LearnerResult  # noqa: E402


def run(*args: str) -> subprocess.CompletedProcess:
    return run_script("rung_predictor.py", *args)


def test_scores_are_measured_on_cells_held_out_of_the_fit(tmp_path):
    args = ("--n-samples", "300", "--cells", "9", "--rungs", "low:1", "--top", "low:2",
            "--truth-learners", "2", "--pairs", "4", "--min-pairs", "4", "--splits", "1",
            "--out", str(tmp_path), "--json")
    proc = run(*args, "--png", str(tmp_path / "s.png"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    truth, pred = np.array(out["truth"]), out["pred"]
    assert len(set(out["cells"])) == 9 and len(truth) == 9
    # the ceiling is the top rung's own E_ens(M) against the truth, over every cell
    assert math.isclose(out["ceiling"]["tau"], kendalltau(pred["low-2ep"], truth)[0], abs_tol=1e-12)
    # the one split: the first permutation of the benchmark's seed; the rung's own score is
    # ranked against the truth on the 5 cells outside the 4 training pairs, not on all 9
    held = np.random.default_rng(0).permutation(9)[4:]
    rows = {r["score"]: r for r in out["rows"]}
    assert rows["rung E_ens"]["held_out"] == 5
    expected = kendalltau(np.array(pred["low-1ep"])[held], truth[held])[0]
    assert math.isclose(rows["rung E_ens"]["tau"], expected, abs_tol=1e-12)
    for name in ("ridge (product)", "GRU curves"):
        assert math.isclose(rows[name]["delta_tau"], rows[name]["tau"] - expected, abs_tol=1e-12)
    assert (tmp_path / "s.png").stat().st_size > 0
    # a second run reads every evaluation back from the cache: the same figures
    again = json.loads(run(*args).stdout)
    assert again["pred"] == out["pred"] and again["truth"] == out["truth"]


def test_too_many_pairs_is_refused_in_one_line_that_quotes_them(tmp_path):
    proc = run("--cells", "10", "--pairs", "4,8", "--min-pairs", "4", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "--pairs '4,8'" in proc.stderr.strip().splitlines()[-1]
    proc = run("--cells", "20", "--pairs", "4", "--out", str(tmp_path))  # below the product's 8
    assert proc.returncode == 2
    assert "--pairs '4'" in proc.stderr.strip().splitlines()[-1]


def _result(rng, quality: float) -> EvalResult:
    """An evaluation whose curves carry ``quality`` (its validation accuracy climbs to it) while
    its E, σ², ρ and size are noise: only a model that reads the curves can rank by it."""
    learners = []
    for s in range(2):
        acc = list(np.linspace(0.1, quality, 4) + rng.normal(0, 0.005, 4))
        learners.append(LearnerResult(seed=s, val_acc=acc[-1], val_nll=1.0, val_brier=0.5,
                                      curves=Curves(train_loss=list(rng.uniform(1, 2, 4)), val_acc=acc,
                                                    grad_norm=list(rng.uniform(0.5, 1, 4)))))
    return EvalResult(spec_hash="x", fidelity="low", seeds=(0, 1), E=float(rng.uniform(0.4, 0.6)),
                      sigma2=0.1, rho=0.5, ci={}, se={}, learners=learners, npz="x.npz", wall_s=0.0,
                      device_s=0.0, params=int(rng.integers(1000, 2000)),
                      flops=int(rng.integers(10**5, 10**6)))


def test_gru_encoder_ranks_held_out_cells_by_what_their_curves_carry():
    rng = np.random.default_rng(0)
    quality = rng.uniform(0.3, 0.9, 40)
    results = [_result(rng, q) for q in quality]
    target = 1.0 - quality  # the top rung's error falls as the curve's end rises
    model = GRUScore(M=8).fit(results[:24], target[:24])
    tau = kendalltau(model.predict(results[24:]), target[24:])[0]
    assert tau > 0.7, tau


def test_the_default_flags_are_accepted():
    """The defaults agree with each other: --pairs starts at the default --min-pairs (the
    product's MIN_PAIRS) and ends within the default --cells − 4 (parsing only, no training)."""
    from rung_predictor import parse_args

    from evaluators.promotion import MIN_PAIRS

    args = parse_args([])
    assert args.min_pairs == MIN_PAIRS
    assert args.pair_list[0] >= args.min_pairs and args.pair_list[-1] <= args.cells - 4
    # the docstring's example parses too
    example = __import__("rung_predictor").__doc__.split("\n\n")[1]
    flags = example.replace("\\", " ").split()[2:]
    flags = flags[:flags.index("[--png")]
    parsed = parse_args(flags)
    assert parsed.pair_list == [8, 16, 32]


def test_bad_setting_flags_are_refused_in_one_line_that_quotes_them(tmp_path):
    (tmp_path / "f").write_text("x")
    for flags, quoted in ((("--min-pairs", "100000"), "'100000'"), (("--seed", "-1"), "'-1'"),
                          (("--out", str(tmp_path / "f")), repr(str(tmp_path / "f"))),
                          (("--png", str(tmp_path / "no" / "s.png")), "s.png")):
        proc = run(*flags)
        assert proc.returncode == 2, flags
        assert "Traceback" not in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert quoted in last and flags[0] in last, last
