"""agent/config.py: the run's settings as the loop reads them."""

from agent.config import RunConfig


def test_a_runs_batch_size_reaches_every_rung():
    rungs = RunConfig(fidelity_schedule="low:2,low", batch_size=16).rungs()
    assert [(r.name, r.batch_size) for r in rungs] == [("low-2ep", 16), ("low", 16)]
    assert [r.batch_size for r in RunConfig().rungs()] == [128]
