"""Process isolation: plain-``def`` job handlers run in child processes with hard timeouts.

- ``protocol``: the messages between the worker and a child (JSON, length-framed);
- ``child``: the child's main loop (``python -m relaybus._isolation.child``);
- ``pool``: the worker's pool of children (started, killed and replaced by the worker);
- ``call``: the handler call that routes a run to the current worker's pool.
"""
