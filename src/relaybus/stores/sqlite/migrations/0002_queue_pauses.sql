-- relaybus schema for SQLite, migration 0002: paused queues (`bus.queues.pause`). A queue listed
-- here is fetched by no node of this release; nodes of 0.1.0 do not read it.

CREATE TABLE IF NOT EXISTS /*prefix*/queue_pauses (
    queue     TEXT PRIMARY KEY,
    paused_at REAL NOT NULL
) WITHOUT ROWID;
