"""The PostgreSQL store (asyncpg): durable jobs shared by any number of worker processes."""

from .store import PostgresStore

__all__ = ["PostgresStore"]
