-- relaybus schema for MySQL 8.0.13+ / MariaDB 10.6+, migration 0001 (InnoDB, utf8mb4).
-- Table names start with the store's table prefix (default relaybus_); index names are per
-- table in MySQL, so they carry no prefix. MySQL runs DDL outside transactions: every statement
-- is safe to run again (IF NOT EXISTS), so a migration cut short can simply be run once more.
-- Times are DATETIME(6) in UTC, written from the server's clock (UTC_TIMESTAMP(6)) unless the
-- store was given a clock. Names compare byte for byte (_bin collations), as on PostgreSQL.

CREATE TABLE IF NOT EXISTS /*prefix*/migrations (
    version    INT NOT NULL PRIMARY KEY,
    name       VARCHAR(128) NOT NULL,
    applied_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS /*prefix*/jobs (
    id            BIGINT NOT NULL AUTO_INCREMENT,
    state         VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    queue         VARCHAR(128) NOT NULL,
    priority      SMALLINT NOT NULL DEFAULT 2,
    attempt       INT NOT NULL DEFAULT 0,
    max_attempts  INT NOT NULL,
    rescues       INT NOT NULL DEFAULT 0,
    unique_states INT NOT NULL DEFAULT 0,
    inserted_at   DATETIME(6) NOT NULL,
    scheduled_at  DATETIME(6) NOT NULL,
    attempted_at  DATETIME(6) NULL,
    finalized_at  DATETIME(6) NULL,
    timeout       DOUBLE NULL,
    handler       VARCHAR(255) NOT NULL,
    event         VARCHAR(1024) NOT NULL,
    attempted_by  VARCHAR(255) NULL,
    unique_key    VARBINARY(64) NULL,
    payload       LONGTEXT NOT NULL,  -- the event as JSON text, byte for byte
    meta          LONGTEXT NOT NULL,  -- JSON object (text: a hand-edited row never fails a read)
    errors        LONGTEXT NOT NULL,  -- JSON array of {at, attempt, kind, message, traceback}
    -- unique_key while the job's state is in unique_states, else NULL (River's design without
    -- partial indexes). Bits are JobState.bit: scheduled 1, available 2, running 4,
    -- retryable 8, completed 16, cancelled 32, discarded 64.
    unique_holder VARBINARY(64) GENERATED ALWAYS AS (
        CASE WHEN unique_key IS NOT NULL AND (unique_states & (CASE state
            WHEN 'scheduled' THEN 1 WHEN 'available' THEN 2 WHEN 'running' THEN 4
            WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'cancelled' THEN 32
            WHEN 'discarded' THEN 64 ELSE 0 END)) <> 0
        THEN unique_key END
    ) STORED,
    -- scheduled_at of a scheduled or retryable job, else NULL: the stager's index holds only
    -- the jobs waiting to become due (what a partial index does on PostgreSQL).
    due_at DATETIME(6) GENERATED ALWAYS AS (
        CASE WHEN state IN ('scheduled', 'retryable') THEN scheduled_at END
    ) STORED,
    PRIMARY KEY (id),
    -- At most one job holds a unique key (NULLs never conflict): the index decides, never a
    -- read-then-write check.
    UNIQUE KEY unique_idx (unique_holder),
    -- The claim: WHERE state = 'available' AND queue = ? ORDER BY priority, scheduled_at, id,
    -- read in index order and stopped by LIMIT (no filesort, so no extra row is locked).
    KEY fetch_idx (state, queue, priority, scheduled_at, id),
    -- The stager: due jobs in due order.
    KEY due_idx (due_at, id),
    -- The rescuer and orphan release: running jobs by node.
    KEY running_idx (state, attempted_by, id),
    -- The pruner: finished jobs by state and age.
    KEY finished_idx (state, finalized_at, id),
    CONSTRAINT /*prefix*/jobs_state_check CHECK (state IN ('scheduled', 'available', 'running',
        'retryable', 'completed', 'cancelled', 'discarded')),
    CONSTRAINT /*prefix*/jobs_priority_check CHECK (priority BETWEEN 0 AND 9),
    CONSTRAINT /*prefix*/jobs_max_attempts_check CHECK (max_attempts >= 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Node heartbeats, stamped with the database clock.
CREATE TABLE IF NOT EXISTS /*prefix*/nodes (
    node       VARCHAR(255) NOT NULL PRIMARY KEY,
    expires_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Paused queues (`bus.queues.pause`): fetched by no node.
CREATE TABLE IF NOT EXISTS /*prefix*/queue_pauses (
    queue     VARCHAR(128) NOT NULL PRIMARY KEY,
    paused_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The leader lease: at most one row.
CREATE TABLE IF NOT EXISTS /*prefix*/leader (
    id         TINYINT NOT NULL PRIMARY KEY,
    node       VARCHAR(255) NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    CONSTRAINT /*prefix*/leader_one_row CHECK (id = 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
