-- Named queries of the SQLite store. /*prefix*/ is the table prefix; every value is a bound
-- parameter. Times are Unix epoch seconds. Payload, meta and errors are read back CAST AS BLOB,
-- so a corrupted row (not UTF-8, not JSON) never fails in the driver.
--
-- Errors are appended with the same expression everywhere:
--   CASE WHEN :error IS NULL THEN errors
--        WHEN json_valid(errors) AND json_type(errors) = 'array'
--            THEN json_insert(errors, '$[#]', json(:error))
--        ELSE json_array(json(:error)) END

-- name: journal_mode
PRAGMA journal_mode = WAL

-- name: synchronous
PRAGMA synchronous = NORMAL

-- name: begin_immediate
BEGIN IMMEDIATE

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS /*prefix*/migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
)

-- name: applied_migrations
SELECT version FROM /*prefix*/migrations ORDER BY version

-- name: record_migration
INSERT INTO /*prefix*/migrations (version, name, applied_at) VALUES (:version, :name, :now)

-- name: insert_job
INSERT INTO /*prefix*/jobs (
    handler, event, queue, priority, state, max_attempts, payload, meta,
    inserted_at, scheduled_at, timeout
) VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TEXT), CAST(? AS TEXT), ?, ?, ?)

-- name: last_insert_id
SELECT last_insert_rowid()

-- name: insert_unique_job
INSERT INTO /*prefix*/jobs (
    handler, event, queue, priority, state, max_attempts, payload, meta,
    inserted_at, scheduled_at, timeout, unique_key, unique_states
) VALUES (
    :handler, :event, :queue, :priority, :state, :max_attempts, CAST(:payload AS TEXT),
    CAST(:meta AS TEXT), :now, :scheduled_at, :timeout, :unique_key, :unique_states
)
ON CONFLICT DO NOTHING  -- the unique index decides; the caller then looks up the holder
RETURNING id

-- name: find_holder
SELECT id, state FROM /*prefix*/jobs WHERE unique_holder = :unique_key

-- name: replace_job
UPDATE /*prefix*/jobs SET
    payload = CASE WHEN :set_payload THEN CAST(:payload AS TEXT) ELSE payload END,
    meta = CASE WHEN :set_meta THEN CAST(:meta AS TEXT) ELSE meta END,
    priority = CASE WHEN :set_priority THEN :priority ELSE priority END,
    queue = CASE WHEN :set_queue THEN :queue ELSE queue END,
    max_attempts = CASE WHEN :set_max_attempts THEN :max_attempts ELSE max_attempts END,
    scheduled_at = CASE WHEN :set_scheduled_at THEN :scheduled_at ELSE scheduled_at END,
    state = :state
WHERE id = :id

-- name: first_available
SELECT id, rescues FROM /*prefix*/jobs
WHERE state = 'available' AND queue = :queue
ORDER BY priority, scheduled_at, id
LIMIT 1

-- name: claim
UPDATE /*prefix*/jobs
SET state = 'running', attempt = attempt + 1, attempted_at = :now, attempted_by = :node
WHERE id IN (
    SELECT id FROM /*prefix*/jobs
    WHERE state = 'available' AND queue = :queue AND rescues < :isolate_after
    ORDER BY priority, scheduled_at, id
    LIMIT :limit
)
RETURNING id, handler, event, queue, priority, attempt, max_attempts, CAST(payload AS BLOB),
    CAST(meta AS BLOB), inserted_at, scheduled_at, timeout, rescues

-- name: claim_one
UPDATE /*prefix*/jobs
SET state = 'running', attempt = attempt + 1, attempted_at = :now, attempted_by = :node
WHERE id = :id AND state = 'available'
RETURNING id, handler, event, queue, priority, attempt, max_attempts, CAST(payload AS BLOB),
    CAST(meta AS BLOB), inserted_at, scheduled_at, timeout, rescues

-- name: unclaim
UPDATE /*prefix*/jobs SET state = 'available', attempt = attempt - 1
WHERE id = :id AND state = 'running' AND attempt = :attempt

-- name: complete_runs
-- :runs is a JSON array of [id, attempt] pairs: one statement completes a whole batch.
UPDATE /*prefix*/jobs SET state = 'completed', finalized_at = :now
WHERE id IN (
    SELECT j.id FROM json_each(:runs) AS r
    JOIN /*prefix*/jobs AS j ON j.id = json_extract(r.value, '$[0]')
    WHERE j.attempt = json_extract(r.value, '$[1]') AND j.state = 'running'
)
RETURNING id, attempt

-- name: end_run
UPDATE /*prefix*/jobs SET
    state = :state,
    attempt = attempt - :refund,
    rescues = rescues + :rescued,
    scheduled_at = COALESCE(:scheduled_at, scheduled_at),
    finalized_at = :finalized_at,
    errors = CASE WHEN :error IS NULL THEN errors
        WHEN json_valid(errors) AND json_type(errors) = 'array'
            THEN json_insert(errors, '$[#]', json(:error))
        ELSE json_array(json(:error)) END
WHERE id = :id AND state = 'running' AND attempt = :attempt

-- name: heartbeat
INSERT INTO /*prefix*/nodes (node, heartbeat_at, expires_at) VALUES (:node, :now, :expires_at)
ON CONFLICT (node) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
    expires_at = excluded.expires_at

-- name: job_run
SELECT state, attempt, attempted_by FROM /*prefix*/jobs WHERE id = :id

-- name: delete_node
DELETE FROM /*prefix*/nodes WHERE node = :node

-- name: elect
INSERT INTO /*prefix*/leader (id, node, expires_at) VALUES (1, :node, :expires_at)
ON CONFLICT (id) DO UPDATE SET node = excluded.node, expires_at = excluded.expires_at
WHERE /*prefix*/leader.node = excluded.node OR /*prefix*/leader.expires_at <= :now
RETURNING node

-- name: resign
DELETE FROM /*prefix*/leader WHERE node = :node

-- name: stage
UPDATE /*prefix*/jobs SET state = 'available'
WHERE id IN (
    SELECT id FROM /*prefix*/jobs
    WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= :now
    ORDER BY scheduled_at, id
    LIMIT :limit
)
RETURNING queue

-- name: due_jobs
SELECT id, queue, attempt, unique_key FROM /*prefix*/jobs
WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= :now
ORDER BY scheduled_at, id
LIMIT :limit

-- name: set_state
UPDATE /*prefix*/jobs SET
    state = :state,
    finalized_at = :finalized_at,
    unique_states = unique_states & :keep_states,
    errors = CASE WHEN :error IS NULL THEN errors
        WHEN json_valid(errors) AND json_type(errors) = 'array'
            THEN json_insert(errors, '$[#]', json(:error))
        ELSE json_array(json(:error)) END
WHERE id = :id

-- name: rescue_candidates
SELECT j.id, j.attempt, j.max_attempts, j.rescues, j.attempted_by,
    n.expires_at IS NULL OR n.expires_at <= :now AS node_lost
FROM /*prefix*/jobs AS j INDEXED BY /*prefix*/jobs_running_idx  -- never a scan of all jobs
LEFT JOIN /*prefix*/nodes AS n ON n.node = j.attempted_by
WHERE j.state = 'running' AND (
    n.expires_at IS NULL OR n.expires_at <= :now
    OR (j.timeout IS NOT NULL AND j.attempted_at + (j.timeout + :grace) < :now)
)
ORDER BY j.id
LIMIT :limit

-- name: prune
DELETE FROM /*prefix*/jobs
WHERE id IN (
    SELECT id FROM /*prefix*/jobs
    WHERE state = :state AND state IN ('completed', 'cancelled', 'discarded')
        AND finalized_at <= :horizon
    ORDER BY finalized_at
    LIMIT :limit
)

-- name: get_job
SELECT id, handler, event, queue, priority, state, attempt, max_attempts,
    CAST(payload AS BLOB), CAST(meta AS BLOB), CAST(errors AS BLOB),
    inserted_at, scheduled_at, attempted_at, attempted_by, finalized_at, unique_key
FROM /*prefix*/jobs WHERE id = :id

-- name: list_jobs
SELECT id, handler, event, queue, priority, state, attempt, max_attempts,
    CAST(payload AS BLOB), CAST(meta AS BLOB), CAST(errors AS BLOB),
    inserted_at, scheduled_at, attempted_at, attempted_by, finalized_at
FROM /*prefix*/jobs
WHERE (:state IS NULL OR state = :state)
    AND (:queue IS NULL OR queue = :queue)
    AND (:handler IS NULL OR handler = :handler)
ORDER BY id
LIMIT :limit

-- name: retry_job
UPDATE /*prefix*/jobs SET
    state = 'available',
    scheduled_at = :now,
    finalized_at = NULL,
    max_attempts = CASE WHEN attempt >= max_attempts THEN attempt + 1 ELSE max_attempts END
WHERE id = :id

-- name: stats
SELECT queue, state, count(*) FROM /*prefix*/jobs GROUP BY queue, state
