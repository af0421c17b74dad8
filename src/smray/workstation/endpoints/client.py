"""A small HTTP client for endpoints: one request (`smray invoke`), or a steady load that records every
answer's status and latency (the serving tests, the scheduled-retraining test and `bench/`)."""

from __future__ import annotations

import http.client
import json
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str


class Connection:
    """A keep-alive connection to http://host:port that reconnects when the server closes it."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Answer:
        """No retries: a load must see every dropped connection."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        self._conn.request(method, path, body=body, headers=headers or {})
        response = self._conn.getresponse()
        answer = Answer(response.status, response.read(), response.getheader("Content-Type", ""))
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return answer

    def invoke(self, body: bytes, content_type: str, accept: str = "") -> Answer:
        headers = {"Content-Type": content_type} | ({"Accept": accept} if accept else {})
        return self.request("POST", "/invocations", body, headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class LoadResult:
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + len(self.errors)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")

    def to_dict(self) -> dict:
        return {
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "errors": len(self.errors),
            "first_errors": self.errors[:5],
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
        }


def load(url: str, body: bytes, content_type: str, seconds: float, stop_file: str = "") -> LoadResult:
    """Sends the same request back to back for `seconds` (or until `stop_file` exists); every answer
    that is not 200, and every connection error, is recorded as an error."""
    conn = Connection(url)
    result = LoadResult(seconds=0.0)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if stop_file and _exists(stop_file):
            break
        sent = time.perf_counter()
        try:
            answer = conn.invoke(body, content_type)
        except (OSError, http.client.HTTPException) as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()
            time.sleep(0.01)
            continue
        if answer.status == 200:
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)
        else:
            result.errors.append(f"HTTP {answer.status}: {answer.body[:200]!r}")
    result.seconds = time.monotonic() - started
    conn.close()
    return result


def _exists(path: str) -> bool:
    try:
        with open(path):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> None:
    """`python -m smray.workstation.endpoints.client URL BODY_FILE CONTENT_TYPE SECONDS [STOP_FILE]`: a
    load from a separate process; prints the result as JSON."""
    url, body_file, content_type, seconds, *rest = argv if argv is not None else sys.argv[1:]
    with open(body_file, "rb") as handle:
        body = handle.read()
    result = load(url, body, content_type, float(seconds), rest[0] if rest else "")
    print(json.dumps(result.to_dict()), flush=True)


if __name__ == "__main__":
    main()
