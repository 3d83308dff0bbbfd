"""Upgrading a database of the previous release (0.1.0) to this release's schema: it holds jobs
in every state (a running one included) while a node of the previous release keeps dispatching
and running jobs; the migration applies, the old node carries on, every job keeps its state, and
this release reads them all and uses its new tables."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

import relaybus as rb
from tests.stores import PG_DSN, server_missing

ROOT = Path(__file__).resolve().parents[2]
#: The last commit of release 0.1.0 (schema version 1).
PREVIOUS_RELEASE = "e650812"
OLD_SCRIPT = Path(__file__).with_name("old_release.py")


@pytest.fixture(scope="module")
def old_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's package, unpacked from git."""
    try:
        archive = subprocess.run(
            ["git", "archive", PREVIOUS_RELEASE, "src/relaybus"],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        server_missing(f"git history with release commit {PREVIOUS_RELEASE}", exc)
        raise
    target = tmp_path_factory.mktemp("release-0.1.0")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / "src"


def _old_env(old_src: Path, log: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{old_src}{os.pathsep}{ROOT}", UPGRADE_LOG=str(log))


def _lines(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _wait_for_lines(log: Path, count: int, node: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while _lines(log) < count:  # a condition another process makes true: poll it, bounded
        assert node.poll() is None, "the old node exited"
        assert time.monotonic() < deadline, f"the old node ran {_lines(log)} of {count} jobs"
        time.sleep(0.05)


@pytest.fixture
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """(dsn, schema) of an empty database of the kind under test."""
    if request.param == "sqlite":
        yield str(tmp_path / "jobs.db"), "-"
        return
    import asyncpg

    try:
        admin = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        server_missing("PostgreSQL", exc)
        raise
    schema = f"t_up_{uuid.uuid4().hex[:10]}"
    try:
        yield PG_DSN, schema
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def _new_store(dsn: str, schema: str) -> Any:
    if dsn.startswith("postgresql://"):
        return rb.PostgresStore(dsn, schema=schema, min_size=1)
    return rb.SQLiteStore(dsn)


@pytest.mark.parametrize("target", ["sqlite", "postgres"], indirect=True)
async def test_upgrade_from_the_previous_release_while_its_node_runs(
    target: tuple[str, str], old_src: Path, tmp_path: Path
) -> None:
    dsn, schema = target
    log = tmp_path / "old-node.log"
    env = _old_env(old_src, log)
    seeded = subprocess.run(
        [sys.executable, str(OLD_SCRIPT), "seed", dsn, schema],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    answer = json.loads(seeded.stdout.strip().splitlines()[-1])
    assert Path(answer["relaybus"]).is_relative_to(old_src)  # the previous release ran it
    ids: dict[str, int] = answer["ids"]
    assert set(ids) == {s.value for s in rb.JobState}

    node = subprocess.Popen([sys.executable, str(OLD_SCRIPT), "node", dsn, schema], env=env)
    try:
        await asyncio.to_thread(_wait_for_lines, log, 20, node)
        store = _new_store(dsn, schema)
        await store.migrate()  # while the old node dispatches, claims and completes
        before = _lines(log)
        await asyncio.to_thread(_wait_for_lines, log, before + 20, node)  # it carries on

        async with rb.Bus(store=store) as bus:
            for state, job_id in ids.items():
                job = await bus.jobs.get(job_id)
                assert job is not None and job.state.value == state, (state, job)
            running = await bus.jobs.get(ids["running"])
            assert running is not None and (running.attempt, running.attempted_by) == (
                1,
                "old-seed",
            )
            assert len(await bus.jobs.list(queue="states")) == len(ids)
            await bus.queues.pause("states")  # the new release's table is there
            assert [q.name for q in await bus.queues.list() if q.paused] == ["states"]
            await bus.queues.resume("states")
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(node.wait, 30)
        except subprocess.TimeoutExpired:
            node.kill()
            raise
    assert code == 0
    versions = await _versions(dsn, schema)
    assert versions == [1, 2]


async def _versions(dsn: str, schema: str) -> list[int]:
    if dsn.startswith("postgresql://"):
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            query = f'SELECT version FROM "{schema}".relaybus_migrations ORDER BY 1'
            rows = await conn.fetch(query)
        finally:
            await conn.close()
        return [r[0] for r in rows]
    import sqlite3

    with sqlite3.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM relaybus_migrations ORDER BY 1")]
