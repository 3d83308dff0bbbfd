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
