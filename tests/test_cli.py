"""The relaybus command and the schema files at the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relaybus.cli import dialects, full_schema, main

ROOT = Path(__file__).resolve().parent.parent


def available_dialects() -> list[str]:
    return dialects()


@pytest.mark.parametrize("dialect", ["sqlite", "postgres", "mysql"])
def test_root_schema_file_is_the_package_migrations(dialect: str) -> None:
    assert dialect in available_dialects(), f"the {dialect} store package is missing"
    on_disk = (ROOT / "migrations" / f"{dialect}.sql").read_text(encoding="utf-8")
    assert on_disk == full_schema(dialect), (
        f"migrations/{dialect}.sql differs from the package migrations: regenerate it with "
        f"`relaybus sql --dialect {dialect} > migrations/{dialect}.sql`"
    )


def test_sql_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "--dialect", "sqlite"]) == 0
    assert capsys.readouterr().out == full_schema("sqlite")


def test_sql_command_rejects_a_bad_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "--dialect", "sqlite", "--prefix", "x; DROP TABLE jobs"]) == 2
    assert "invalid table prefix" in capsys.readouterr().err


def test_migrate_command_sets_up_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    result = subprocess.run(
        [sys.executable, "-m", "relaybus", "migrate", "--dsn", f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert path.exists() and path.stat().st_size > 0
    again = subprocess.run(
        [sys.executable, "-m", "relaybus", "migrate", "--dsn", f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr  # idempotent


def test_migrate_command_never_prints_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--dsn", "mysql://root:secret-canary@127.0.0.1/x"]) == 2
    err = capsys.readouterr().err
    assert "secret-canary" not in err


# -- the command's errors: one short line, exit 2, no traceback, no password -------------------

import json  # noqa: E402
import os  # noqa: E402

from relaybus.stores import registry  # noqa: E402
from tests.stores import PG_DSN, server_missing  # noqa: E402


def run_cli(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RELAYBUS_")}
    environ.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "relaybus", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd, env=environ,
    )  # fmt: skip


def short_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("relaybus: "), result.stderr  # after any warnings of the store
    return result.stderr


def test_a_dsn_without_a_scheme_is_an_error_not_a_file(tmp_path: Path) -> None:
    err = short_error(run_cli("migrate", "--dsn", "newcomer", cwd=tmp_path))
    assert "'newcomer' is not a DSN" in err and "sqlite:///" in err
    assert not (tmp_path / "newcomer").exists()
    assert registry.for_dsn("newcomer") is None
    for path in ("jobs.db", "x/jobs.sqlite", "JOBS.SQLITE3"):
        kind = registry.for_dsn(path)
        assert kind is not None and kind.name == "sqlite"


def test_a_schema_for_sqlite_is_an_error(tmp_path: Path) -> None:
    err = short_error(
        run_cli("migrate", "--dsn", f"sqlite:///{tmp_path}/j.db", "--schema", "x", cwd=tmp_path)
    )
    assert "--schema applies to PostgreSQL only" in err
    assert not (tmp_path / "j.db").exists()
    from relaybus.stores.sqlite import SQLiteStore

    with pytest.raises(ValueError, match="SQLite has no schemas"):
        SQLiteStore.from_dsn("sqlite:///j.db", prefix="relaybus_", schema="x")
    with pytest.raises(ValueError, match="not a SQLite DSN"):
        SQLiteStore.from_dsn("newcomer", prefix="relaybus_")


def test_an_unreachable_database_is_one_masked_line() -> None:
    dsn = "postgresql://u:secret-canary@127.0.0.1:1/x"
    err = short_error(run_cli("stats", "--dsn", dsn))
    assert "secret-canary" not in err
    err = short_error(run_cli("jobs", "list", RELAYBUS_DSN=dsn))
    assert "secret-canary" not in err


def test_a_missing_schema_names_the_migrate_command() -> None:
    asyncpg = pytest.importorskip("asyncpg")
    import asyncio

    async def reachable() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        await conn.close()

    try:
        asyncio.run(reachable())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        server_missing("PostgreSQL", exc)
    err = short_error(run_cli("jobs", "list", "--dsn", PG_DSN, "--schema", "never_migrated_x"))
    assert f"run `relaybus migrate --dsn '{PG_DSN}' --schema never_migrated_x` first" in err


def test_sqlite_says_what_migrate_applies(tmp_path: Path) -> None:
    first = run_cli("migrate", "--dsn", f"sqlite:///{tmp_path}/j.db")
    assert first.returncode == 0, first.stderr
    assert "applying migration 0001_initial" in first.stderr
    assert "applying migration 0002_queue_pauses" in first.stderr
    assert "2 migrations applied" in first.stdout
    again = run_cli("migrate", "--dsn", f"sqlite:///{tmp_path}/j.db")
    assert "nothing to apply" in again.stdout


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("nosuchmodule_xyz:bus", "cannot import 'nosuchmodule_xyz'"),
        ("tests.procs.cliapp:nothere", "has no attribute 'nothere'"),
        ("tests.procs.cliapp:not_a_bus", "is a object, not a relaybus.Bus"),
        ("tests.procs.cliapp", "--app takes MODULE:BUS"),
    ],
)
def test_an_app_that_is_not_a_bus(app: str, message: str, tmp_path: Path) -> None:
    env = {"CLIAPP_DSN": f"sqlite:///{tmp_path}/j.db"}
    assert message in short_error(run_cli("jobs", "list", "--app", app, **env))
    assert message in short_error(run_cli("worker", app, **env))


def test_no_app_and_no_dsn_says_how() -> None:
    assert "--app MODULE:BUS or --dsn DSN" in short_error(run_cli("stats"))


def test_the_help_is_plain_text() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "``" not in result.stdout and ":class:" not in result.stdout
    assert "relaybus worker" in result.stdout


def test_sql_creates_a_named_schema_first() -> None:
    script = full_schema("postgres", schema="x")
    assert script.index("CREATE SCHEMA IF NOT EXISTS x;") < script.index("-- migration 0001")
    assert "CREATE SCHEMA" not in full_schema("postgres")  # public: the root file's content


def test_jobs_commands_on_an_app(tmp_path: Path) -> None:
    env = {"CLIAPP_DSN": f"sqlite:///{tmp_path}/j.db"}
    setup = (
        "import asyncio\nimport relaybus as rb\nfrom tests.procs.cliapp import bus, Task\n"
        "async def main():\n    async with bus:\n"
        "        await bus.dispatch_many([Task(1), Task(2, fail=True)])\n"
        "        await rb.testing.drain(bus)\n"
        "asyncio.run(main())\n"
    )
    environ = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    subprocess.run([sys.executable, "-c", setup], cwd=ROOT, env=environ, check=True, timeout=60)
    app = ["--app", "tests.procs.cliapp:bus"]

    listing = run_cli("jobs", "list", *app, **env)
    assert listing.returncode == 0, listing.stderr
    assert "cliapp.run" in listing.stdout and "RuntimeError: task 2 failed" in listing.stdout
    found = run_cli("jobs", "list", "--state", "discarded", "--json", *app, **env)
    as_json = json.loads(found.stdout)
    assert [j["id"] for j in as_json] == [2]

    show = run_cli("jobs", "show", "2", *app, **env)
    assert show.returncode == 0, show.stderr
    assert '"n": 2' in show.stdout and "Traceback (most recent call last)" in show.stdout
    assert "task 2 failed on purpose" in show.stdout
    assert "no job with id 99" in short_error(run_cli("jobs", "show", "99", *app, **env))

    retried = run_cli("jobs", "retry", "2", *app, **env)
    assert retried.returncode == 0 and "job 2: available" in retried.stdout
    cancelled = run_cli("jobs", "cancel", "2", "99", *app, **env)
    assert cancelled.returncode == 2 and "job 2: cancelled" in cancelled.stdout
    assert "no job with id 99" in cancelled.stderr

    stats = run_cli("stats", "--json", "--dsn", env["CLIAPP_DSN"])
    assert json.loads(stats.stdout)["work"]["completed"] == 1
    table = run_cli("stats", RELAYBUS_DSN=env["CLIAPP_DSN"])
    assert "work" in table.stdout and "cancelled" in table.stdout


def _seed_for_admin(path: Path) -> list[int]:
    """Five jobs on a SQLite file: two failed for good, three waiting on queue "mail"."""
    import asyncio

    import relaybus as rb
    from tests.procs.cliapp import Task

    bus: rb.Bus[object] = rb.Bus(store=rb.SQLiteStore(path))

    @bus.job(Task, name="cliapp.admin", max_attempts=1)
    async def fail(event: Task, ctx: rb.Context[object]) -> None:
        raise RuntimeError(f"task {event.n} failed")

    async def main() -> list[int]:
        async with bus:
            ids = [r.jobs[0].id for r in await bus.dispatch_many([Task(1), Task(2)])]
            await rb.testing.drain(bus)
            waiting = await bus.dispatch_many([Task(n) for n in (3, 4, 5)], queue="mail")
            return ids + [r.jobs[0].id for r in waiting]

    return asyncio.run(main())


def test_admin_commands_delete_bulk_page_nodes_and_queues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "admin.db"
    ids = _seed_for_admin(path)
    dsn = ["--dsn", f"sqlite:///{path}"]

    def run(*args: str) -> str:
        assert main([*args, *dsn]) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    newest = json.loads(run("jobs", "list", "--order", "newest", "--limit", "2", "--json"))
    assert [j["id"] for j in newest] == ids[::-1][:2]
    page = json.loads(run("jobs", "list", "--after", str(ids[2]), "--json"))
    assert [j["id"] for j in page] == ids[3:]
    assert [j["id"] for j in json.loads(run("jobs", "list", "--text", '"n":4', "--json"))] == [
        ids[3]
    ]
    assert "2 jobs retried" in run("jobs", "retry", "--state", "discarded")
    assert "1 job cancelled" in run("jobs", "cancel", "--queue", "mail", "--limit", "1")
    assert f"job {ids[4]}: deleted" in run("jobs", "delete", str(ids[4]))
    assert json.loads(run("jobs", "delete", "--state", "cancelled", "--json")) == {"deleted": 1}
    assert main(["jobs", "retry", *dsn]) == 2  # neither ids nor filters
    assert "takes job ids, or filters" in capsys.readouterr().err

    assert "queue 'mail' paused" in run("queues", "pause", "mail")
    assert "mail (paused)" in run("stats")
    listed = json.loads(run("queues", "list", "--json"))
    assert {q["name"]: q["paused"] for q in listed} == {"default": False, "mail": True}
    assert "resumed" in run("queues", "resume", "mail")
    assert "(paused)" not in run("stats")
    assert "no live nodes" in run("nodes")
    assert json.loads(run("nodes", "--json")) == []
