"""Checkpoints and managed spot training for the training jobs smray defines on AWS (the pipeline's
training or tuning jobs and the retraining workflow's). Every such job syncs /opt/ml/checkpoints to a
`checkpoints/` prefix under its run's output, so a restarted job resumes (smray.training.checkpoint);
with managed spot training, an interrupted job is restarted on new capacity and resumes there."""

from __future__ import annotations

from smray.errors import UserError

CHECKPOINTS = "checkpoints"  # the prefix under a run's output
MAX_RUN_S = 86_400  # a training job's MaxRuntimeInSeconds (the SDK's default)


def check_max_wait(max_wait_s: int, max_run_s: int = MAX_RUN_S) -> int:
    """SageMaker's rule: a spot job waits at least as long as it may run."""
    if max_wait_s and max_wait_s < max_run_s:
        raise UserError(
            f"--spot-max-wait {max_wait_s} s is shorter than the training job's maximum run of {max_run_s} s"
        )
    return max_wait_s
