"""Group C plumbing: one adapter module per system (``sys_<name>.py``, each importing only its
own library) and ``client.py``, the process that drives one adapter (enqueue or work)."""
