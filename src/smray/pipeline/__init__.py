"""The housing workflow as a SageMaker Pipeline: one definition, two targets (`aws` and `local`)."""

import os

# The v2 SDK is the one whose workflow API and local pipelines work (see docs/); its import-time notice
# is about v3's existence, not about our calls.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
