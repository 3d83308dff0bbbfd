"""SQLAlchemyStore: the SQL stores over a SQLAlchemy ``AsyncEngine`` (the ``sqlalchemy`` extra)."""

from .store import SQLAlchemyStore

__all__ = ["SQLAlchemyStore"]
