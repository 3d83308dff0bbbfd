"""MemoryStore: the default store. Dicts and heaps in this process; fastest; lost on exit.

It implements the same Driver operations and the same job semantics as the database stores (the
conformance and driver suites run against it), so code written against it moves to a durable
store unchanged.
"""

from .store import MemoryStore

__all__ = ["MemoryStore"]
