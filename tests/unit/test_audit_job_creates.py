"""How the crash drills count Job creates in the API server's audit log (tests/support/invariants.py)."""

from __future__ import annotations

import json
from pathlib import Path

from support.invariants import audit_job_creates


def _line(aid: str, name: str, code: int, agent: str = "conveyor/0.1.0 (op-1)") -> str:
    return json.dumps(
        {
            "auditID": aid,
            "stage": "ResponseComplete",
            "verb": "create",
            "userAgent": agent,
            "objectRef": {"resource": "jobs", "namespace": "stage", "name": name},
            "responseStatus": {"code": code},
        }
    )


def test_a_second_attempt_hidden_by_a_409_counts_and_a_retry_after_a_5xx_does_not(tmp_path: Path):
    log = tmp_path / "audit.log"
    log.write_text(
        "\n".join(
            [
                _line("1", "lost-track", 201),
                _line("2", "lost-track", 409),  # the operator forgot it made this Job: a second attempt
                _line("3", "retried", 504),  # the server could not answer: the operator must retry
                _line("4", "retried", 201),
                _line("5", "landed-anyway", 504),  # a 504 that did create it: the retry's 409 is the one
                _line("6", "landed-anyway", 409),
                _line("7", "not-ours", 201, agent="kubectl/v1.36"),
                _line("2", "lost-track", 409),  # the same audit event twice (a rotated copy) counts once
            ]
        )
        + "\n"
    )
    creates = audit_job_creates(log, ["stage"])
    assert creates == {("stage", "lost-track"): 2, ("stage", "retried"): 1, ("stage", "landed-anyway"): 1}
