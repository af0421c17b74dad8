"""The kinds of failure smray reports, in one line each, as SageMaker's own toolkits sort them.

- `UserError` (a client error): the user can fix it (input, configuration, arguments). The message is
  the whole explanation and is shown as written.
- `PlatformError`: the user's input did not cause it and cannot fix it by changing that input: a host
  lost, Docker or AWS refusing, a service that never came up. Shown as "platform error: ..."; running
  again may succeed. Failures of AWS calls (botocore) and of commands we run count as this kind too.
- Anything else is a bug: "internal error: <type>: ...", with its traceback in the log.
"""

from __future__ import annotations

import subprocess


class UserError(Exception):
    """A failure the user can fix; the message is the whole explanation."""


class PlatformError(Exception):
    """A failure of what smray runs on (hosts, network, Docker, AWS): not the user's input."""


class ClusterError(PlatformError):
    """The Ray cluster could not form, or lost a host while the job ran."""


def one_line(exc: BaseException) -> str:
    """What a failure file, or the CLI, shows for `exc`: one line that says which kind it is."""
    text = " ".join(str(exc).split())
    if isinstance(exc, UserError):
        return text or type(exc).__name__
    if isinstance(exc, subprocess.CalledProcessError):
        command = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd))
        last = (exc.stderr or "").strip().splitlines()[-1:] if isinstance(exc.stderr, str) else []
        text = f"`{command}` exited with {exc.returncode}" + (f": {last[0]}" if last else "")
        return f"platform error: {text}"
    if expected(exc):
        return f"platform error: {text or type(exc).__name__}"
    return (
        f"internal error: {type(exc).__name__}: {text}" if text else f"internal error: {type(exc).__name__}"
    )


def expected(exc: BaseException) -> bool:
    """Whether `exc` is a failure smray anticipates (shown in one line) rather than a bug."""
    if isinstance(exc, UserError | PlatformError | subprocess.CalledProcessError):
        return True
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError)
