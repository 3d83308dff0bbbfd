"""The ``relaybus`` command, thin over the public API (``bus.jobs``, ``bus.queues``,
``bus.nodes``, ``bus.worker``, the stores' constructors through the store registry): no SQL of
its own.

argparse (standard library) rather than click or typer: the command has a handful of
subcommands and options, and relaybus keeps its core dependencies to msgspec alone.

Modules: ``schema`` (migrate, sql), ``target`` (which bus or store a command works on),
``admin`` (jobs, stats, nodes, queues), ``output`` (tables and JSON), ``worker`` (worker, demo),
``parser`` (the options and ``main``).
"""

from .common import CLIError
from .output import job_data
from .parser import main
from .schema import dialects, full_schema
from .target import load_app, store_for_dsn

__all__ = ["CLIError", "dialects", "full_schema", "job_data", "load_app", "main", "store_for_dsn"]
