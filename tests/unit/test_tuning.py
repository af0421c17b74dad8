"""Tuning's parts that decide (`smray.entrypoints.training.tuning`): the ASHA ladder that ends bad trials
early, the share of a host's cores a trial may use, the trials' draws. The trials themselves run on a
real Ray instance in tests/integration/test_train.py and, over 2 hosts of containers,
in tests/container/test_pipeline_local.py."""

import asyncio
import random
from collections.abc import Awaitable, Callable

from smray import hyperparameters
from smray.entrypoints.training.tuning import CoreShare, Ladder, rung_rounds


def test_rungs_start_at_the_grace_rounds_and_grow_threefold_below_num_round():
    assert rung_rounds(3000, 20) == [20, 60, 180, 540, 1620]
    assert rung_rounds(40, 5) == [5, 15]
    assert rung_rounds(20, 20) == []  # no rung before the last round: every trial runs to the end


def _climb(
    ladder: Ladder, trial: int, scores: dict[int, float], num_round: int
) -> Callable[[list[float]], Awaitable[int]]:
    """One trial's way up the ladder (scores by rung; a rung missing from them: it stopped early before
    it); the rounds it ran."""

    async def climb(delays: list[float]) -> int:
        rounds = num_round
        for rung in ladder.scores:
            await asyncio.sleep(delays.pop())
            if rung not in scores:
                rounds = rung - 1
                break
            if not await ladder.goes_on(trial, rung, scores[rung]):
                rounds = rung
                break
        await ladder.ended(trial, rounds)
        return rounds

    return climb


def test_a_trial_goes_on_only_among_the_best_third_of_those_drawn_before_it():
    async def decide() -> list[bool]:
        ladder = Ladder(rung_rounds(3000, 20))
        return [await ladder.goes_on(i, 20, s) for i, s in enumerate([500.0, 400.0, 450.0, 100.0, 460.0])]

    # the first has nothing to be compared with; 450 is worse than the best third of [500, 400]
    assert asyncio.run(decide()) == [True, True, False, True, False]


# 5 trials' validation scores at the rungs 20, 60 and 180 of 300 rounds; trial 3 stopped early before 60
SCORES = [
    {20: 500.0, 60: 300.0, 180: 200.0},
    {20: 400.0, 60: 350.0, 180: 150.0},
    {20: 450.0, 60: 250.0, 180: 100.0},
    {20: 300.0},
    {20: 350.0, 60: 260.0, 180: 120.0},
]


def test_the_ladder_decides_as_if_the_trials_ran_one_after_another_whichever_is_faster():
    async def run(seed: int | None) -> list[int]:
        ladder = Ladder(rung_rounds(300, 20))
        climbs = [_climb(ladder, i, scores, 300) for i, scores in enumerate(SCORES)]
        if seed is None:  # one after another, in the order drawn
            return [await climb([0.0] * 3) for climb in climbs]
        rng = random.Random(seed)
        return list(await asyncio.gather(*(c([rng.uniform(0, 0.01) for _ in range(3)]) for c in climbs)))

    one_after_another = asyncio.run(run(None))
    assert one_after_another == [300, 60, 20, 59, 300]
    for seed in range(20):  # trials running side by side, each at its own random pace
        assert asyncio.run(run(seed)) == one_after_another, seed


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
