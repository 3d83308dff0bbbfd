"""The MySQL/MariaDB store (asyncmy, or aiomysql): durable jobs shared by any number of worker
processes, on MySQL 8 or MariaDB 10.6+."""

from .store import MySQLStore

__all__ = ["MySQLStore"]
