"""The housing workflow as a SageMaker Pipeline: one definition, two targets (`aws` and `local`)."""

import logging
import os

# The v2 SDK is the one whose workflow API and local pipelines work; its import-time notice is about
# v3's existence, not about our calls. Its config logger prints to stdout at INFO, which would corrupt
# `smray pipeline show`'s JSON: warnings and errors still come through.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
# "Popping out 'ProcessingJobName' from the pipeline definition": said once per step per definition()
logging.getLogger("sagemaker.workflow.utilities").setLevel(logging.ERROR)
# Logs "will collect telemetry... to opt out..." before it reads the opt-out local mode sets (local_mode.py)
logging.getLogger("sagemaker.telemetry").setLevel(logging.WARNING)

# The gate's Fail step: the definition names it, the local run's summary reads its message
FAIL_STEP = "GateFail"
