"""RayEvaluator on a local Ray of 2 CPUs: the same numbers and files as the local evaluator, a
killed worker retried or reported, failures as results, and the one-line errors."""

import os
import socket
import sys
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from evaluators.data import load_task  # noqa: E402
from evaluators.dual import PACK_MAX_STEP_FLOPS, step_flops  # noqa: E402
from evaluators.evaluator import EvalJob, LocalEvaluator  # noqa: E402
from evaluators.fidelity import Fidelity  # noqa: E402
from evaluators.ray_evaluator import (  # noqa: E402
    INSTALL_HINT,
    KILL_ONCE_ENV,
    ClusterUnreachable,
    RayEvaluator,
    RayUnavailable,
    TaskRecipe,
    connect,
    import_ray,
)
from evaluators.results import EvalFailure, EvalResult  # noqa: E402
from spaces import SizeCap, TaskInfo, get_space  # noqa: E402

SPACE = get_space("nb201")
TINY = Fidelity(name="tiny", epochs=2, train_fraction=1.0, width_mult=0.5, batch_size=64, lr=3e-3)
RECIPE = TaskRecipe("digits", "cpu", None, 300, 0)
TOL = 1e-6


@pytest.fixture(scope="module")
def kill_flag(tmp_path_factory):
    """The file whose absence arms a worker's one-time SIGKILL (present: disarmed). The variable
    is set before Ray starts, so every worker inherits it."""
    flag = tmp_path_factory.mktemp("fault") / "killed"
    flag.write_text("disarmed")
    old = os.environ.get(KILL_ONCE_ENV)
    os.environ[KILL_ONCE_ENV] = str(flag)
    yield flag
    if old is None:
        os.environ.pop(KILL_ONCE_ENV, None)
    else:
        os.environ[KILL_ONCE_ENV] = old


@pytest.fixture(scope="module")
def local_ray(kill_flag):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def task():
    return load_task(RECIPE.dataset, n_samples=RECIPE.n_samples, seed=RECIPE.seed)


def specs():
    rng = np.random.default_rng(3)
    return [SPACE.reference(), SPACE.sample(rng)]


def jobs_for(seeds=(0, 1), previous=None):
    return [EvalJob(f"p{i}", s, SPACE.canonical_hash(s), TINY, seeds, previous)
            for i, s in enumerate(specs())]


def ray_evaluator(tmp_path, **kw):
    return RayEvaluator("nb201", RECIPE, tmp_path / "ray", 50, **kw)


def assert_same(a: EvalResult, b: EvalResult, dir_a, dir_b):
    assert a.npz == b.npz and a.seeds == b.seeds
    for name in ("E", "sigma2", "rho", "seed_var"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or abs(x - y) <= TOL, name
    with np.load(dir_a / a.npz) as pa, np.load(dir_b / b.npz) as pb:
        np.testing.assert_allclose(pa["probs"], pb["probs"], atol=TOL)
        np.testing.assert_array_equal(pa["labels"], pb["labels"])


@pytest.mark.slow
def test_results_and_npz_equal_the_local_evaluators_also_when_extending(local_ray, task, tmp_path):
    local = LocalEvaluator(SPACE, task, tmp_path / "local", 50)
    remote = ray_evaluator(tmp_path)
    want = dict(local.evaluate_many(jobs_for()))
    got = dict(remote.evaluate_many(jobs_for()))
    assert sorted(got) == [0, 1]
    for i in got:
        assert_same(got[i], want[i], tmp_path / "ray", tmp_path / "local")
    # extension: only seeds 2 and 3 train (one task each), joined with the saved learners 0, 1
    grown_local = dict(local.evaluate_many(jobs_for((0, 1, 2, 3), want[0])[:1]))[0]
    grown_ray = dict(remote.evaluate_many(jobs_for((0, 1, 2, 3), got[0])[:1]))[0]
    assert len(grown_ray.learners) == 4 and grown_ray.seed_var is not None
    assert_same(grown_ray, grown_local, tmp_path / "ray", tmp_path / "local")
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(
        [got[0].npz, got[1].npz, grown_ray.npz])  # the driver wrote these and nothing else


def test_a_job_is_cut_per_new_learner_except_many_new_learners_of_a_small_step_on_cuda(tmp_path):
    """Per learner on CPU and for a few learners on CUDA; one part (packed) for ≥ 8 on CUDA,
    unless a step is too large to pack (then per learner, not 8 learners queued in one task)."""
    previous = EvalResult(spec_hash="h", fidelity="tiny", seeds=(0, 1), E=0.5, sigma2=0.1,
                          rho=0.5, ci={}, se={}, learners=[], npz="x.npz", wall_s=0, device_s=0,
                          params=1, flops=1)
    job = EvalJob("p", SPACE.reference(), "h", TINY, (0, 1, 2, 3), previous)
    many = EvalJob("p", SPACE.reference(), "h", TINY, tuple(range(10)), previous)
    assert ray_evaluator(tmp_path)._parts(job) == [(2,), (3,)]
    assert ray_evaluator(tmp_path)._parts(many) == [(s,) for s in range(2, 10)]
    cuda = RayEvaluator("nb201", TaskRecipe("digits", "cuda"), tmp_path, 50)
    assert cuda._parts(job) == [(2,), (3,)]
    assert cuda._parts(many) == [tuple(range(2, 10))]
    images = TaskInfo((3, 32, 32), 10)
    small = RayEvaluator("nb201", TaskRecipe("digits", "cuda"), tmp_path, 50, task_info=images,
                         n_train=50_000)
    assert small._parts(many) == [tuple(range(2, 10))]  # C = 16, N = 5 at width 0.5: small
    big = EvalJob("p", SPACE.reference().model_copy(update={"channels": 64}), "h",
                  TINY.model_copy(update={"width_mult": 1.0, "batch_size": 1024}), tuple(range(10)),
                  previous)
    assert step_flops(SPACE, big.spec, images, big.fidelity, 50_000) > PACK_MAX_STEP_FLOPS
    assert small._parts(big) == [(s,) for s in range(2, 10)]
    assert ray_evaluator(tmp_path, split="job")._parts(jobs_for()[0]) == [(0, 1)]


def test_a_spec_over_the_cap_comes_back_as_a_failure_result(local_ray, tmp_path):
    remote = ray_evaluator(tmp_path, cap=SizeCap(max_params=10, max_flops=10))
    (i, result), = remote.evaluate_many(jobs_for()[:1])
    assert i == 0 and isinstance(result, EvalFailure) and result.kind == "error"
    assert "param" in result.message.lower()
    assert not (tmp_path / "ray").exists()


def test_an_exception_in_a_worker_is_an_error_failure_quoting_it(local_ray, tmp_path):
    """A job that cannot run (extending another spec's evaluation) raises ValueError in the
    worker; the driver gets it as one failure line, not a crash."""
    other = EvalResult(spec_hash="not-this-spec", fidelity="tiny", seeds=(0, 1), E=0.5,
                       sigma2=0.1, rho=0.5, ci={}, se={}, learners=[], npz="x.npz", wall_s=0,
                       device_s=0, params=1, flops=1)
    (i, got), = ray_evaluator(tmp_path).evaluate_many(jobs_for((0, 1, 2), other)[:1])
    assert isinstance(got, EvalFailure) and got.kind == "error"
    assert got.message.startswith("ValueError: cannot extend evaluation x.npz with seeds (0, 1, 2)")
    assert "\n" not in got.message


@pytest.mark.parametrize("limit", [None, 1])
def test_at_most_max_concurrent_tasks_are_in_flight(local_ray, tmp_path, monkeypatch, limit):
    """Two jobs of two learner-tasks each (over the cap, so each part ends at once): without a
    limit all four are out at the first wait; with --max-concurrent 1 one at a time."""
    seen, wait = [], ray.wait
    monkeypatch.setattr(ray, "wait", lambda refs, **kw: seen.append(len(refs)) or wait(refs, **kw))
    remote = ray_evaluator(tmp_path, cap=SizeCap(max_params=10, max_flops=10), max_concurrent=limit)
    results = dict(remote.evaluate_many(jobs_for()))
    assert sorted(results) == [0, 1] and all(r.kind == "error" for r in results.values())
    if limit is None:  # a failed part cancels its job's other part, so fewer waits follow
        assert seen[0] == 4
    else:
        assert seen and max(seen) == 1


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_gives_the_same_result(local_ray, kill_flag, task, tmp_path):
    want = LocalEvaluator(SPACE, task, tmp_path / "local", 50).evaluate(
        SPACE.reference(), TINY, (0, 1))
    kill_flag.unlink()  # armed: the next task to start kills its worker once
    got = ray_evaluator(tmp_path, max_retries=2).evaluate(SPACE.reference(), TINY, (0, 1))
    assert kill_flag.read_text().isdigit()  # a worker (this pid) did die
    assert isinstance(got, EvalResult)
    assert_same(got, want, tmp_path / "ray", tmp_path / "local")


def test_a_killed_worker_without_retries_is_an_error_naming_its_death(local_ray, kill_flag, tmp_path):
    kill_flag.unlink()
    got = ray_evaluator(tmp_path, max_retries=0).evaluate(SPACE.reference(), TINY, (0, 1))
    assert kill_flag.read_text().isdigit()
    assert isinstance(got, EvalFailure) and got.kind == "error", got
    assert got.message.startswith("the Ray worker training it died (retried 0 times)")
    assert "\n" not in got.message


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(RayUnavailable) as err:
        import_ray()
    assert str(err.value) == "--executor ray needs the [ray] extra: pip install -e '.[ray]'"
    assert str(err.value) == INSTALL_HINT


def test_an_unreachable_address_fails_fast_with_one_line(monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh driver
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # unused once closed
    start = time.monotonic()
    with pytest.raises(ClusterUnreachable) as err:
        connect(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 30
    assert str(err.value).startswith(f"--ray-address 127.0.0.1:{port}: no Ray cluster answers")
    with pytest.raises(ClusterUnreachable, match="expected host:port or auto"):
        connect("nonsense")
