"""The shared SQL store core: every Driver operation once, over a dialect and an executor.

A *dialect* (``dialect.py``) is one database's named queries plus the few algorithms that must
differ (fetch, batch insert, applying many run ends); an *executor* (``executor.py``) is one
client library. This package imports no client library.
"""
