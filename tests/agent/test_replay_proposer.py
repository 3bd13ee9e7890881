"""``--model replay:RUN_DIR`` (``agent/proposers/replay.py``): a source with nothing to replay is
refused when the proposer is made, before a baseline trains for a run that could propose nothing."""

import json

import pytest

from agent.proposers import make_proposer
from agent.proposers.base import ProposerFatal
from spaces import get_space

SPACE = get_space("nb201")


def test_a_folder_that_is_not_a_run_is_refused_naming_it(tmp_path):
    with pytest.raises(ProposerFatal) as err:
        make_proposer(f"replay:{tmp_path / 'nowhere'}", space=SPACE, seed=0)
    assert str(err.value) == (f"replay:{tmp_path / 'nowhere'}: {tmp_path / 'nowhere'} is not a run "
                              "folder: trajectory.jsonl is missing")


def test_a_log_without_proposals_is_refused(tmp_path):
    (tmp_path / "trajectory.jsonl").write_text("")
    with pytest.raises(ProposerFatal, match=r"its log holds no proposals to replay"):
        make_proposer(f"replay:{tmp_path}", space=SPACE, seed=0)
    baseline_only = {"event": "proposal", "time": "2026-11-25T00:00:00Z", "iteration": 0,
                     "proposal_id": "baseline", "source": "baseline", "call_id": "baseline",
                     "spec": SPACE.reference().model_dump()}
    (tmp_path / "trajectory.jsonl").write_text(json.dumps(baseline_only) + "\n")
    with pytest.raises(ProposerFatal, match=r"its log holds no proposals to replay"):
        make_proposer(f"replay:{tmp_path}", space=SPACE, seed=0)
