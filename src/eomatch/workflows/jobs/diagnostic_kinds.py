"""``sleep``: a diagnostic kind for the queue's own tests and benchmark (hidden, opt-in).

Registered only when ``EOMATCH_JOBS_DIAGNOSTIC=1`` is set (in the submitter's and the worker's
environment): it can upsert a given item and fail on purpose, which a production queue
should not offer. It sleeps in small steps (checking for cancellation), optionally fails
for its first attempts (``fail_attempts``; ``transient`` failures are retried), then upserts
``item`` if given (idempotent: a re-run upserts the same document).
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal

from pydantic import Field

from eomatch.errors import InputError, NetworkError
from eomatch.workflows.jobs.registry import JobContext, JobKind, JobParams, JobResult, register

ENV = "EOMATCH_JOBS_DIAGNOSTIC"


class SleepParams(JobParams):
    """Params of a ``sleep`` job."""

    seconds: float = Field(0.0, ge=0, le=3600)
    fail: Literal["transient", "permanent"] | None = None
    fail_attempts: int = Field(1_000_000, ge=0)
    item: dict[str, Any] | None = None


def run_sleep(params: SleepParams, ctx: JobContext) -> JobResult:
    """Sleep, maybe fail, maybe upsert the item."""
    ctx.stage("sleep")
    end = time.monotonic() + params.seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(0.05, left))
        ctx.check_cancelled()
    if params.fail and ctx.attempt <= params.fail_attempts:
        ctx.stage("fail")
        if params.fail == "transient":
            raise NetworkError(f"diagnostic transient failure (attempt {ctx.attempt})")
        raise InputError("diagnostic permanent failure")
    if params.item is None:
        return JobResult(info={"slept": params.seconds})
    ctx.stage("upsert")
    ctx.store.upsert_items([params.item])
    return JobResult(updated=[(str(params.item.get("collection")), str(params.item.get("id")))])


if os.environ.get(ENV) == "1":
    register(
        JobKind(
            name="sleep",
            params_model=SleepParams,
            run=run_sleep,
            description="diagnostic: sleep, maybe fail, maybe upsert an item",
            hidden=True,
        )
    )
