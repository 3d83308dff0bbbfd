"""relaybus demo: a small shop backend on a durable SQLite store, end to end.

    make demo        (or: relaybus demo, python examples/demo.py)

The demo's code is src/relaybus/_demo.py (read it there): it ships inside the package so that
an installed relaybus runs the same demo with ``relaybus demo``. It uses a SQLite file of its own
in a temporary directory, so it never picks up your jobs.
"""

from relaybus._demo import run

if __name__ == "__main__":
    run()
