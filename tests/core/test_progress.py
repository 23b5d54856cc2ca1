"""The one progress / cancel abstraction: records, reporters and the follow-a-job loop."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from napari_seem.core.progress import (
    Cancelled,
    JobFailed,
    Progress,
    check_cancelled,
    follow_job,
    pair_reporter,
    report,
)


@dataclass
class Status:
    state: str
    done: int
    total: int
    message: str | None = None
    error: str | None = None


class FakeJob:
    """A job that advances one unit per poll and honours a cancel request."""

    def __init__(self, total: int, fail_at: int | None = None) -> None:
        self.total, self.fail_at, self.done, self.cancels = total, fail_at, 0, 0
        self.cancel_requested = False

    def poll(self, _wait: float) -> Status:
        if self.cancel_requested:
            return Status("cancelled", self.done, self.total)
        if self.fail_at is not None and self.done == self.fail_at:
            return Status("failed", self.done, self.total, error="tile 3 unreadable")
        if self.done == self.total:
            return Status("done", self.done, self.total)
        self.done += 1
        return Status("running", self.done, self.total, message=f"tile {self.done}")

    def cancel(self) -> None:
        self.cancels += 1
        self.cancel_requested = True


def test_follow_reports_each_change_and_returns_the_final_status() -> None:
    job, seen = FakeJob(4), []
    final = follow_job(job.poll, cancel_job=job.cancel, reporter=seen.append, interval=0)
    assert final.state == "done"
    assert [(p.done, p.total, p.message) for p in seen] == [
        (k, 4, f"tile {k}") for k in range(1, 5)
    ]


def test_cancel_is_forwarded_once_and_raises_cancelled() -> None:
    job, cancel = FakeJob(100), threading.Event()

    def reporter(progress: Progress) -> None:
        if progress.done == 3:
            cancel.set()

    with pytest.raises(Cancelled, match="after 3 of 100"):
        follow_job(job.poll, cancel_job=job.cancel, reporter=reporter, cancel=cancel, interval=0)
    assert job.cancels == 1


def test_failed_job_raises_with_its_error() -> None:
    job = FakeJob(10, fail_at=3)
    with pytest.raises(JobFailed, match="segment everything failed: tile 3 unreadable"):
        follow_job(job.poll, cancel_job=job.cancel, interval=0, what="segment everything")


def test_pair_reporter_and_report_helpers() -> None:
    pairs: list[tuple[int, int]] = []
    report(pair_reporter(lambda d, t: pairs.append((d, t))), 2, 5, "x", loss=0.5)
    report(None, 1, 1)  # no reporter: nothing happens
    assert pairs == [(2, 5)]
    assert pair_reporter(None) is None
    assert Progress(3, 4).fraction == 0.75 and Progress(1, 0).fraction == 0.0
    cancel = threading.Event()
    check_cancelled(cancel)
    cancel.set()
    with pytest.raises(Cancelled, match="training was cancelled"):
        check_cancelled(cancel, "training")
