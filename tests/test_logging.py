"""Logging: every job line the runtime logs carries job id, handler, queue and attempt (in
the text and as ``extra`` fields); ``ctx.logger`` records carry them as fields; the command's
JSON format is one object per line with those fields and no secrets; a worker serving none of
the handlers' queues warns."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest

import relaybus as rb
from relaybus import _logfmt
from relaybus.testing import drain


@dataclass(frozen=True)
class Mail(rb.Event, name="log.mail"):
    to: str


FIELDS = ("job_id", "handler", "queue", "attempt")


def make_bus() -> rb.Bus[Any]:
    bus: rb.Bus[Any] = rb.Bus()

    @bus.job(Mail, name="log.send", queue="mail", max_attempts=2, backoff=rb.Constant(0))
    async def send(event: Mail, ctx: rb.Context[Any]) -> None:
        assert ctx.job is not None
        ctx.logger.info("sending, attempt %s", ctx.job.attempt)
        raise ConnectionError("smtp down: secret-payload-not-logged is not in here")

    return bus


async def test_job_lines_carry_the_job_fields(caplog: pytest.LogCaptureFixture) -> None:
    bus = make_bus()
    caplog.set_level(logging.DEBUG, logger="relaybus")
    async with bus:
        job_id = (await bus.dispatch(Mail("secret-payload@example.com"))).jobs[0].id
        await drain(bus)
    jobs = [r for r in caplog.records if getattr(r, "job_id", None) == job_id]
    by_logger = {r.name for r in jobs}
    assert {"relaybus.worker", "relaybus.handler"} <= by_logger, by_logger
    for record in jobs:
        assert record.handler == "log.send" and record.queue == "mail"  # type: ignore[attr-defined]
        assert record.attempt in (1, 2)  # type: ignore[attr-defined]
    runtime = [r for r in jobs if r.name == "relaybus.worker"]
    failed = [r.getMessage() for r in runtime if r.levelno >= logging.WARNING]
    assert failed[0].startswith(f"job {job_id} (log.send) on mail attempt 1/2 failed with ")
    assert "smtp down" in failed[0] and "retry in" in failed[0]
    assert failed[-1].endswith("; discarded") and "attempt 2/2" in failed[-1]
    assert [r.levelno for r in runtime if "started" in r.getMessage()] == [logging.DEBUG] * 2
    assert not any("secret-payload@" in r.getMessage() for r in caplog.records)


def test_json_format_is_one_object_per_line_and_masks_passwords() -> None:
    stream = io.StringIO()
    handler = _logfmt.setup(
        "json", logging.INFO, stream=stream, secrets=("postgresql://u:pw-1@h/db",)
    )
    try:
        logger = logging.getLogger("relaybus.test")
        logger.info(
            "job %s done", 7, extra={"job_id": 7, "handler": "h", "queue": "q", "attempt": 1}
        )
        logger.warning("cannot reach postgresql://u:pw-1@h/db nor mysql://r:pw-2@h/x")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) == 3
    assert records[0]["message"] == "job 7 done"
    assert {k: records[0][k] for k in FIELDS} == {
        "job_id": 7,
        "handler": "h",
        "queue": "q",
        "attempt": 1,
    }
    assert "pw-1" not in stream.getvalue() and "pw-2" not in stream.getvalue()
    assert "ValueError: boom" in records[2]["exception"]


def test_text_format_appends_the_fields_of_handler_records() -> None:
    formatter = _logfmt.TextFormatter()
    record = logging.LogRecord("relaybus.handler", logging.INFO, "x", 1, "hello", None, None)
    record.__dict__.update(job_id=3, handler="h", queue="q", attempt=2)
    assert formatter.format(record).endswith("hello [job 3 h queue=q attempt=2]")


async def test_a_worker_serving_none_of_the_handlers_queues_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = make_bus()
    async with bus, bus.worker(queues={"default": 1, "other": 1}):
        pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "serves queues ['default', 'other'], but no job handler of this bus uses them" in w
        and "the handlers' queues are ['mail']" in w
        for w in warnings
    ), warnings
    caplog.clear()
    async with bus, bus.worker(queues={"mail": 1}):
        pass
    assert not [r for r in caplog.records if "serves queues" in r.getMessage()]
