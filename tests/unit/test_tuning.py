"""Tuning's parts that decide (`smray.entrypoints.training.tuning`): the ASHA ladder that ends bad trials
early, the share of a host's cores a trial may use, the trials' draws. The trials themselves run on a
real Ray instance in tests/integration/test_train.py and, over 2 hosts of containers,
in tests/container/test_pipeline_local.py."""

from smray import hyperparameters
from smray.entrypoints.training.tuning import CoreShare, Ladder, rung_rounds


def test_rungs_start_at_the_grace_rounds_and_grow_threefold_below_num_round():
    assert rung_rounds(3000, 20) == [20, 60, 180, 540, 1620]
    assert rung_rounds(40, 5) == [5, 15]
    assert rung_rounds(20, 20) == []  # no rung before the last round: every trial runs to the end


def test_a_trial_goes_on_only_among_the_best_third_of_those_before_it():
    ladder = Ladder(rung_rounds(3000, 20))
    assert ladder.goes_on(20, 500.0)  # the first at a rung has nothing to be compared with
    assert ladder.goes_on(20, 400.0)  # better than the first
    assert not ladder.goes_on(20, 450.0)  # worse than the best third of [500, 400]
    assert ladder.goes_on(20, 100.0)
    assert not ladder.goes_on(20, 460.0)
    assert ladder.goes_on(60, 460.0)  # each rung keeps its own scores


def test_trials_are_the_same_draws_for_the_same_seed_and_within_their_ranges():
    first, again = hyperparameters.sample_trials(8, 7), hyperparameters.sample_trials(8, 7)
    assert first == again and first != hyperparameters.sample_trials(8, 8)
    for trial in first:
        for name, value in trial.items():
            param = hyperparameters.BY_NAME[name]
            assert param.tune[0] <= value <= param.tune[1]
            assert isinstance(value, param.kind)


def test_a_trial_takes_the_cores_its_host_s_ended_trials_leave():
    share = CoreShare({"head": 4, "worker": 2})
    for _ in range(4):
        share.started("head")
    share.started("worker")
    assert (share.threads("head"), share.threads("worker")) == (1, 2)
    share.ended("head")
    share.ended("head")
    assert share.threads("head") == 2
    share.ended("head")
    assert share.threads("head") == 4  # the last trial there has the host to itself
    share.started("worker")
    share.started("worker")
    assert share.threads("worker") == 1  # never fewer than one
