"""smray: one container image that runs Ray-based ML workflows on Amazon SageMaker and on a laptop."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("smray")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
