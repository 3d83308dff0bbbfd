-- relaybus schema for sqlite: migrations 1-2

-- migration 0001_initial
-- relaybus schema for SQLite, migration 0001. Table and index names start with the store's
-- table prefix (default relaybus_). Times are Unix epoch seconds (REAL, UTC) from the store's clock.

CREATE TABLE IF NOT EXISTS relaybus_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused
    handler       TEXT    NOT NULL,
    event         TEXT    NOT NULL,
    queue         TEXT    NOT NULL,
    priority      INTEGER NOT NULL DEFAULT 2,
    state         TEXT    NOT NULL CHECK (state IN ('scheduled', 'available', 'running',
                      'retryable', 'completed', 'cancelled', 'discarded')),
    attempt       INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 10,
    payload       TEXT    NOT NULL,              -- JSON
    meta          TEXT    NOT NULL DEFAULT '{}', -- JSON object
    errors        TEXT    NOT NULL DEFAULT '[]', -- JSON array of {at, attempt, kind, message, traceback}
    inserted_at   REAL    NOT NULL,
    scheduled_at  REAL    NOT NULL,
    attempted_at  REAL,
    attempted_by  TEXT,
    finalized_at  REAL,
    timeout       REAL,
    rescues       INTEGER NOT NULL DEFAULT 0,
    unique_key    BLOB,
    unique_states INTEGER NOT NULL DEFAULT 0,    -- bitmask of states that hold unique_key
    -- unique_key while the job's state is in unique_states, else NULL. The bits are JobState.bit:
    -- scheduled 1, available 2, running 4, retryable 8, completed 16, cancelled 32, discarded 64.
    unique_holder BLOB GENERATED ALWAYS AS (
        CASE WHEN unique_key IS NOT NULL AND (unique_states & (CASE state
            WHEN 'scheduled' THEN 1 WHEN 'available' THEN 2 WHEN 'running' THEN 4
            WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'cancelled' THEN 32
            WHEN 'discarded' THEN 64 ELSE 0 END)) != 0
        THEN unique_key END
    ) VIRTUAL
);

-- At most one job holds a unique key: enforced here, never by read-then-write.
CREATE UNIQUE INDEX IF NOT EXISTS relaybus_jobs_unique_idx
    ON relaybus_jobs (unique_holder) WHERE unique_holder IS NOT NULL;

-- Fetch: available jobs of a queue in run order.
CREATE INDEX IF NOT EXISTS relaybus_jobs_fetch_idx
    ON relaybus_jobs (queue, priority, scheduled_at, id) WHERE state = 'available';

-- Stage: scheduled and retryable jobs by due time.
CREATE INDEX IF NOT EXISTS relaybus_jobs_due_idx
    ON relaybus_jobs (scheduled_at, id) WHERE state IN ('scheduled', 'retryable');

-- Rescue: running jobs by node.
CREATE INDEX IF NOT EXISTS relaybus_jobs_running_idx
    ON relaybus_jobs (attempted_by) WHERE state = 'running';

-- Prune: finished jobs by finish time.
CREATE INDEX IF NOT EXISTS relaybus_jobs_finished_idx
    ON relaybus_jobs (state, finalized_at) WHERE state IN ('completed', 'cancelled', 'discarded');

-- Nodes: one heartbeat row per worker process, alive until expires_at.
CREATE TABLE IF NOT EXISTS relaybus_nodes (
    node         TEXT PRIMARY KEY,
    heartbeat_at REAL NOT NULL,
    expires_at   REAL NOT NULL
) WITHOUT ROWID;

-- Leadership: a single lease row.
CREATE TABLE IF NOT EXISTS relaybus_leader (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    node       TEXT NOT NULL,
    expires_at REAL NOT NULL
);

-- migration 0002_queue_pauses
-- relaybus schema for SQLite, migration 0002: paused queues (`bus.queues.pause`). A queue listed
-- here is fetched by no node of this release; nodes of 0.1.0 do not read it.

CREATE TABLE IF NOT EXISTS relaybus_queue_pauses (
    queue     TEXT PRIMARY KEY,
    paused_at REAL NOT NULL
) WITHOUT ROWID;
