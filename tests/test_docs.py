"""The documentation is executable: every ```python block of README.md and docs/*.md runs.

Each block runs as its own program (a fresh interpreter, in an empty temporary directory) with a
timeout, and must exit 0. A block whose first line is ``# not run`` is only compiled: keep those
rare (a snippet that needs a server address the reader fills in). Blocks that use PostgreSQL run
against the local server (``RELAYBUS_PG_DSN``, default postgresql://postgres@127.0.0.1:5432/test):
skipped when it is unreachable, failed under CI=true.

Relative links between the pages must point at files that exist.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.stores import PG_DSN, server_missing

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
ANY_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
SCHEMA_ARG = re.compile(r"""schema=["']([A-Za-z_][A-Za-z0-9_]*)["']""")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
NOT_RUN = "# not run"
TIMEOUT = 60


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return not self.code.lstrip().startswith(NOT_RUN)

    @property
    def needs_postgres(self) -> bool:
        return "PostgresStore" in self.code


def collect() -> list[Block]:
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append(Block(page, line, match.group(1)))
    return blocks


BLOCKS = collect()
RUNNABLE = [b for b in BLOCKS if b.runs]


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def postgres_reachable() -> None:
    url = urlparse(PG_DSN)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 5432), 2):
            pass
    except OSError as exc:
        server_missing("PostgreSQL", exc)


def reset_schemas(block: Block) -> None:
    """Drop the schemas a PostgreSQL example uses, so each run starts from nothing (no jobs or
    tables left by an earlier run, or by an earlier version of the schema)."""
    schemas = sorted(set(SCHEMA_ARG.findall(block.code)))
    assert schemas and "public" not in schemas, (
        f"{block.id}: a PostgreSQL example must use a schema of its own (schema='...')"
    )

    async def drop() -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    if block.needs_postgres:
        postgres_reachable()
        reset_schemas(block)
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), RELAYBUS_PG_DSN=PG_DSN)
    try:
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        output = "\n".join(_text(o) for o in (exc.stdout, exc.stderr))
        pytest.fail(f"{block.id} did not finish within {TIMEOUT}s:\n{output}")
    assert proc.returncode == 0, (
        f"{block.id} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_python_block_compiles(block: Block) -> None:
    # sketches may await at top level, as in an async REPL
    compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_the_readme_quickstart_runs() -> None:
    readme = [b for b in RUNNABLE if b.page.name == "README.md"]
    assert readme, "README.md must hold a runnable quickstart (a ```python block)"


def test_not_run_blocks_are_rare() -> None:
    skipped = [b.id for b in BLOCKS if not b.runs]
    assert len(skipped) <= max(3, len(BLOCKS) // 5), f"too many '# not run' blocks: {skipped}"


def test_index_lists_every_page() -> None:
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    text = ANY_FENCE.sub("", page.read_text(encoding="utf-8"))
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        assert (page.parent / path).exists(), f"{page.name} links to missing {target}"


def test_the_demo_runs(tmp_path: Path) -> None:
    """`make demo` stays green: examples/demo.py runs end to end and checks its own story."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert "stopped gracefully" in proc.stdout
