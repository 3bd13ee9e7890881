import numpy as np
import pytest
import torch

from evaluators.data import load_task
from evaluators.dual import (
    PACK_MAX_STEP_FLOPS,
    PACK_MIN_LEARNERS,
    SMALL_STEP_FLOPS,
    choose_packed,
    choose_threads,
    evaluate,
)
from evaluators.ensemble import validate_ensemble
from evaluators.fidelity import Fidelity
from evaluators.results import EvalFailure, EvalResult
from evaluators.stats import ensemble_brier, residual_stats
from evaluators.train import TrainData, train_learners
from spaces import SizeCap, get_space

SPACE = get_space("nb201")
TINY = Fidelity(name="tiny", epochs=2, train_fraction=1.0, width_mult=0.5, batch_size=64, lr=3e-3)


@pytest.fixture(scope="module")
def digits():
    return load_task("digits", seed=0)


@pytest.fixture(scope="module")
def dual(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("evals")
    return evaluate(SPACE.reference(), SPACE, digits, TINY, (3, 4), npz_dir=out), out


@pytest.fixture(scope="module")
def grown(digits, dual):
    """The dual evaluation extended by seeds 5 and 6 (only those two train)."""
    first, out = dual
    return evaluate(SPACE.reference(), SPACE, digits, TINY, (3, 4, 5, 6), npz_dir=out,
                    previous=first)


def _by_hand(probs, labels):
    """E, σ², ρ written out: means over learners, ρ from every pair i < j."""
    eps = probs.astype(np.float64) - np.eye(probs.shape[2])[labels]
    E = np.mean([np.mean(np.sum(e**2, axis=1)) for e in eps])
    c = eps - eps.mean(axis=1, keepdims=True)
    sigma2 = np.mean([np.mean(np.sum(ci**2, axis=1)) for ci in c])
    L = len(eps)
    cov = np.mean([np.mean(np.sum(c[i] * c[j], axis=1)) for i in range(L) for j in range(i + 1, L)])
    return E, sigma2, cov / sigma2


def test_statistics_match_numpy_from_the_saved_npz(dual):
    result, out = dual
    assert isinstance(result, EvalResult)
    assert result.npz == f"{result.spec_hash}-tiny-3-4.npz"
    saved = np.load(out / result.npz)
    probs, labels = saved["probs"], saved["labels"]
    assert probs.dtype == np.float32 and probs.shape[0] == 2 and labels.dtype == np.int64
    E, sigma2, rho = _by_hand(probs, labels)
    assert result.E == pytest.approx(E, rel=1e-9)
    assert result.sigma2 == pytest.approx(sigma2, rel=1e-9)
    assert result.rho == pytest.approx(rho, rel=1e-9)
    for name, (lo, hi) in result.ci.items():
        assert lo <= getattr(result, name) <= hi
    assert all(len(l.curves.train_loss) == TINY.epochs for l in result.learners)
    assert all(l.test_acc is not None and 0 <= l.test_acc <= 1 for l in result.learners)
    assert result.seed_var is None  # two learners: no jackknife


def test_extending_trains_only_new_seeds_and_equals_a_fresh_evaluation(digits, dual, grown,
                                                                       tmp_path):
    first, out = dual
    assert isinstance(grown, EvalResult) and grown.seeds == (3, 4, 5, 6)
    assert [l.seed for l in grown.learners] == [3, 4, 5, 6]
    assert grown.learners[:2] == first.learners  # the logged learners are kept, not retrained
    saved = np.load(out / grown.npz)
    assert saved["probs"].shape[0] == 4
    np.testing.assert_array_equal(saved["probs"][:2], np.load(out / first.npz)["probs"])
    E, sigma2, rho = _by_hand(saved["probs"], saved["labels"])
    assert (grown.E, grown.sigma2, grown.rho) == pytest.approx((E, sigma2, rho), rel=1e-9)
    assert grown.seed_var is not None and grown.seed_var > 0
    fresh = evaluate(SPACE.reference(), SPACE, digits, TINY, (3, 4, 5, 6), npz_dir=tmp_path)
    assert (fresh.E, fresh.sigma2, fresh.rho) == pytest.approx((grown.E, grown.sigma2, grown.rho),
                                                               rel=1e-6)
    with pytest.raises(ValueError, match="cannot extend"):
        evaluate(SPACE.reference(), SPACE, digits, TINY, (9, 4, 5), npz_dir=out, previous=first)


def test_m2_prediction_equals_averaged_probabilities_up_to_mean_gap(dual):
    """E_ens(2) from (E, σ², ρ) vs the Brier of the averaged learners.

    With ε̄ = (ε₁+ε₂)/2 and μᵢ the learners' mean residuals, expanding mean‖ε̄‖² gives exactly
    mean‖ε̄‖² = E − σ²(1−ρ)/2 − ‖μ₁−μ₂‖²/4 (σ² is the mean of the two variances and ρσ² the
    residual covariance), so E_ens(2) exceeds the truth by ‖μ₁−μ₂‖²/4.
    """
    result, out = dual
    saved = np.load(out / result.npz)
    probs, labels = saved["probs"], saved["labels"]
    true = ensemble_brier(probs, labels)
    predicted = result.stats.ens_error(2)
    eps = probs.astype(np.float64) - np.eye(probs.shape[2])[labels]
    mu = eps.mean(axis=1)
    gap = np.sum((mu[0] - mu[1]) ** 2) / 4
    assert predicted - true == pytest.approx(gap, abs=1e-9)


def test_same_seeds_give_identical_numbers(digits, dual, tmp_path):
    again = evaluate(SPACE.reference(), SPACE, digits, TINY, (3, 4), npz_dir=tmp_path)
    first = dual[0]
    assert (again.E, again.sigma2, again.rho) == (first.E, first.sigma2, first.rho)


def test_nan_loss_is_a_typed_failure(digits, tmp_path):
    wild = TINY.model_copy(update={"lr": 1e12, "name": "wild"})
    result = evaluate(SPACE.reference(), SPACE, digits, wild, (0, 1), npz_dir=tmp_path)
    assert isinstance(result, EvalFailure) and result.kind == "nan"


def test_time_limit_is_a_typed_failure(digits, tmp_path):
    result = evaluate(SPACE.reference(), SPACE, digits, TINY, (0, 1), npz_dir=tmp_path,
                      time_limit_s=1e-6)
    assert isinstance(result, EvalFailure) and result.kind == "timeout"


def test_out_of_memory_is_a_typed_failure(digits, tmp_path, monkeypatch):
    import evaluators.dual as dual_module

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(dual_module, "train_learners", oom)
    result = evaluate(SPACE.reference(), SPACE, digits, TINY, (0, 1), npz_dir=tmp_path)
    assert isinstance(result, EvalFailure) and result.kind == "oom"
    assert "out of memory" in result.message


def test_oversized_spec_is_a_typed_failure(digits, tmp_path):
    result = evaluate(SPACE.reference(), SPACE, digits, TINY, (0, 1), npz_dir=tmp_path,
                      cap=SizeCap(max_params=10))
    assert isinstance(result, EvalFailure) and result.kind == "error"
    assert "params" in result.message


def test_packed_training_matches_sequential(digits):
    data = TrainData(digits.x_train, digits.y_train, digits.x_val, digits.y_val, digits.x_test)

    def factory():
        return SPACE.build(SPACE.reference(), digits.info, width_mult=0.5)

    kwargs = dict(seeds=[5, 6], epochs=1, batch_size=64, lr=3e-3, threads=1)
    seq = train_learners(factory, data, packed=False, **kwargs)
    packed = train_learners(factory, data, packed=True, **kwargs)
    for a, b in zip(seq, packed, strict=True):
        assert np.abs(a.val_probs - b.val_probs).max() < 1e-3
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
    assert np.abs(seq[0].val_probs - seq[1].val_probs).max() > 1e-3  # seeds really differ


def test_packs_of_two_train_the_same_learners_as_one_pack(digits):
    """Splitting an ensemble into packs changes memory, not the learners (1e-3, as packed vs
    sequential above: each learner's init, data order and updates are its own)."""
    data = TrainData(digits.x_train, digits.y_train, digits.x_val, digits.y_val, digits.x_test)

    def factory():
        return SPACE.build(SPACE.reference(), digits.info, width_mult=0.5)

    kwargs = dict(seeds=[5, 6, 7], epochs=1, batch_size=64, lr=3e-3, threads=1, packed=True)
    whole = train_learners(factory, data, **kwargs)
    split = train_learners(factory, data, pack_size=2, **kwargs)
    for a, b in zip(whole, split, strict=True):
        assert a.seed == b.seed
        assert np.abs(a.val_probs - b.val_probs).max() < 1e-3
        assert np.abs(a.test_probs - b.test_probs).max() < 1e-3


def test_learners_are_packed_only_when_many_small_ones_train_on_cuda():
    """The H100 measurements behind ``auto``: packing loses at L = 2 and for a CNN-size step,
    wins for 8+ small learners; never on CPU; an explicit choice always stands."""
    cuda, cpu, small = torch.device("cuda"), torch.device("cpu"), PACK_MAX_STEP_FLOPS / 40
    assert choose_packed(cuda, "auto", PACK_MIN_LEARNERS, small)
    assert not choose_packed(cuda, "auto", 2, small)
    assert not choose_packed(cuda, "auto", 32, 1.8e11)  # the airbench-size CNN
    assert not choose_packed(cpu, "auto", 32, small)
    assert choose_packed(cpu, True, 2, 1.8e11) and not choose_packed(cuda, False, 32, small)


class _WithDeadBranch(torch.nn.Module):
    """A network with a layer whose output never reaches the logits (an NB201 cell whose
    'none' edges cut a convolution off): its parameters get no gradient."""

    def __init__(self):
        super().__init__()
        self.live, self.dead = torch.nn.Linear(64, 10), torch.nn.Linear(64, 10)

    def forward(self, x):
        x = x.flatten(1)
        self.dead(x)
        return self.live(x)


def test_packed_training_runs_with_parameters_that_get_no_gradient(digits):
    data = TrainData(digits.x_train, digits.y_train, digits.x_val, digits.y_val, digits.x_test)
    kwargs = dict(seeds=[5, 6], epochs=1, batch_size=64, lr=3e-3, threads=1)
    seq = train_learners(_WithDeadBranch, data, packed=False, **kwargs)
    packed = train_learners(_WithDeadBranch, data, packed=True, **kwargs)
    for a, b in zip(seq, packed, strict=True):
        assert np.abs(a.val_probs - b.val_probs).max() < 1e-3
        assert b.grad_norm[0] == pytest.approx(a.grad_norm[0], rel=1e-3)


@pytest.mark.parametrize("packed", [False, True])
def test_compiled_training_matches_eager(digits, packed):
    data = TrainData(digits.x_train, digits.y_train, digits.x_val, digits.y_val, digits.x_test)

    def factory():  # small, so compiling on CPU stays quick
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32),
                                   torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

    kwargs = dict(seeds=[5, 6], epochs=1, batch_size=64, lr=3e-3, threads=1, packed=packed)
    eager = train_learners(factory, data, **kwargs)
    compiled = train_learners(factory, data, compile_model=True, **kwargs)
    for a, b in zip(eager, compiled, strict=True):
        assert np.abs(a.val_probs - b.val_probs).max() < 1e-3
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_bf16_autocast_path_runs_packed_and_sequential(digits, device):
    """The GPU's bf16 autocast code path (on CPU through CPU autocast): both ways of training
    agree to bf16 precision (train loss within 5 %) and learn (validation accuracy > 0.3, chance
    0.1). On CUDA the packed path once failed in batch norm's backward (bf16 activations, fp32
    running statistics under vmap)."""
    data = TrainData(*(t.to(device) for t in (digits.x_train, digits.y_train, digits.x_val,
                                              digits.y_val, digits.x_test)))

    def factory():
        return SPACE.build(SPACE.reference(), digits.info, width_mult=0.5)

    kwargs = dict(seeds=[5, 6], epochs=2, batch_size=64, lr=3e-3, threads=1, use_amp=True)
    seq = train_learners(factory, data, packed=False, **kwargs)
    packed = train_learners(factory, data, packed=True, **kwargs)
    for a, b in zip(seq, packed, strict=True):
        assert np.isfinite(a.val_probs).all() and np.isfinite(b.val_probs).all()
        assert a.train_loss == pytest.approx(b.train_loss, rel=0.05)
        assert min(a.val_acc[-1], b.val_acc[-1]) > 0.3


def test_validate_ensemble_m4_on_digits_predicts_the_true_ensemble(digits, dual, grown):
    """The real 4-ensemble (seeds 3-6) against the predictions: from all four learners the
    formula misses the true Brier only by the learners' mean-residual spread (the identity of
    the M = 2 test, for L = 4, written out below); from the first two learners (what a
    two-learner search sees) within 15 % of the true error."""
    v = validate_ensemble(SPACE.reference(), SPACE, digits, TINY, 4, seed0=3)
    result = dual[0]
    # learners 0-1 of the ensemble are the dual pair: same prediction as the search made
    assert v.predicted_ens_brier == pytest.approx(result.stats.ens_error(4), rel=1e-9)
    saved = np.load(dual[1] / grown.npz)
    probs, labels = saved["probs"], saved["labels"]
    assert v.true_ens_brier == pytest.approx(ensemble_brier(probs, labels), rel=1e-6)
    mu = (probs.astype(np.float64) - np.eye(probs.shape[2])[labels]).mean(axis=1)
    spread = np.mean([np.sum((mu[i] - mu[j]) ** 2) for i in range(4) for j in range(4) if i != j])
    # E_ens(4) from uncentred moments is exact; the centred σ², c̄ differ from them by the means:
    # true = E − (σ² − c̄)·3/4 − spread·3/8  (spread = mean over ordered pairs of ‖μ_i − μ_j‖²)
    assert grown.stats.ens_error(4) - v.true_ens_brier == pytest.approx(spread * 3 / 8, abs=1e-6)
    assert abs(v.predicted_ens_brier - v.true_ens_brier) <= 0.15 * v.true_ens_brier
    assert v.true_ens_brier <= grown.E + 1e-12  # convexity: never worse than its learners' mean
    assert residual_stats(np.zeros((2, 3, 2)) + 0.5, np.array([0, 1, 0])).E == pytest.approx(0.5)


def test_small_cpu_steps_train_on_one_thread_and_the_setting_is_restored(digits, tmp_path,
                                                                          monkeypatch):
    import evaluators.train as train_module

    seen = []
    real = train_module._train_one
    monkeypatch.setattr(train_module, "_train_one",
                        lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    before = torch.get_num_threads()
    one_epoch = TINY.model_copy(update={"epochs": 1})
    assert isinstance(evaluate(SPACE.reference(), SPACE, digits, one_epoch, (0, 1),
                               npz_dir=tmp_path, packed=False), EvalResult)
    assert seen == [1, 1] and torch.get_num_threads() == before
    cpu = torch.device("cpu")
    assert choose_threads(cpu, SMALL_STEP_FLOPS / 2, "auto") == 1
    assert choose_threads(cpu, SMALL_STEP_FLOPS * 2, "auto") is None
    assert choose_threads(cpu, 1.0, 3) == 3
    assert choose_threads(torch.device("meta"), 1.0, "auto") is None


def test_dropout_is_a_function_of_the_learner_seed(digits):
    """Two trainings of a dropout net with one seed give the same learner even when the global
    RNG was used in between (dropout draws from a generator seeded per learner)."""
    data = TrainData(digits.x_train, digits.y_train, digits.x_val, digits.y_val, digits.x_test)

    def factory():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                   torch.nn.Dropout(0.5), torch.nn.Linear(32, 10))

    kwargs = dict(seeds=[5], epochs=1, batch_size=64, lr=3e-3, threads=1)
    first = train_learners(factory, data, **kwargs)[0]
    torch.rand(1000)  # someone else drew from the global RNG
    again = train_learners(factory, data, **kwargs)[0]
    np.testing.assert_array_equal(first.val_probs, again.val_probs)
    other = train_learners(factory, data, **{**kwargs, "seeds": [6]})[0]
    assert np.abs(first.val_probs - other.val_probs).max() > 1e-3
