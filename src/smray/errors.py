"""The two kinds of failure smray reports.

`UserError` is something the user can fix (bad input, bad configuration, a missing host): its message is
written for that user and shown as is, in one line. Anything else is a bug or a platform fault: its
traceback is logged and a short message names its type.
"""


class UserError(Exception):
    """A failure the user can fix; the message is the whole explanation."""


class ClusterError(UserError):
    """The Ray cluster could not form, or lost a host while the job ran."""
