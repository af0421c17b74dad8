import re

import pytest

from smray.errors import ClusterError
from smray.ray_bootstrap.resolve import resolve
from smray.retry import retry


class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


def test_retries_with_backoff_until_success():
    t = FakeTime()
    answers = iter([OSError("not yet"), OSError("not yet"), OSError("not yet"), "10.0.0.2"])

    def attempt():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert retry(attempt, what="x", timeout_s=60, clock=t.clock, sleep=t.sleep) == "10.0.0.2"
    assert t.sleeps == [0.2, 0.4, 0.8]


def test_gives_up_at_the_deadline_with_a_clear_error():
    t = FakeTime()

    def attempt():
        raise OSError("Name or service not known")

    with pytest.raises(ClusterError) as err:
        retry(
            attempt,
            what="host name 'algo-9' resolving",
            timeout_s=10,
            error=ClusterError,
            clock=t.clock,
            sleep=t.sleep,
        )
    assert "host name 'algo-9' resolving did not happen within 10 s" in str(err.value)
    assert "Name or service not known" in str(err.value)
    assert max(t.sleeps) <= 5.0 and t.now == pytest.approx(10)


def test_resolve_names_the_host_that_never_resolved():
    def lookup(host):
        raise OSError("no such host")

    with pytest.raises(ClusterError, match=re.escape("'algo-7-zzzzz' resolving did not happen within 0.3 s")):
        resolve("algo-7-zzzzz", 0.3, lookup=lookup)
