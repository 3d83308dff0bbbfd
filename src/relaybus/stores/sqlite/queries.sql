-- Named queries of the SQLite dialect. /*prefix*/ is the table prefix; every value is a bound
-- :name parameter. Times are Unix epoch seconds. Text and JSON columns are read back CAST AS
-- BLOB, so a corrupted row (not UTF-8, not JSON) never fails in the driver (the core decodes
-- them, see stores/_sql/rows.py). Queries apply the
-- values the core decided (relaybus._jobrules); none of them chooses a job's state.
--
-- Errors are appended with the same expression everywhere:
--   CASE WHEN :error IS NULL THEN errors
--        WHEN json_valid(errors) AND json_type(errors) = 'array'
--            THEN json_insert(errors, '$[#]', json(:error))
--        ELSE json_array(json(:error)) END

-- ----------------------------------------------------------------------- connection (own)

-- name: journal_mode
PRAGMA journal_mode = WAL

-- name: synchronous
PRAGMA synchronous = NORMAL

-- name: begin
BEGIN IMMEDIATE

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- ------------------------------------------------------------------------------ migrations

-- name: migrate_lock
-- BEGIN IMMEDIATE already holds the database's only write lock.
SELECT :key IS NOT NULL

-- name: schema_exists
-- SQLite has no schemas: the file is the schema.
SELECT 1

-- name: create_schema
SELECT 1

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

-- ------------------------------------------------------------------------- inserting (own)

-- name: insert_job
INSERT INTO /*prefix*/jobs (
    handler, event, queue, priority, state, max_attempts, payload, meta,
    inserted_at, scheduled_at, timeout
) VALUES (
    :handler, :event, :queue, :priority, :state, :max_attempts, CAST(:payload AS TEXT),
    CAST(:meta AS TEXT), :now, :scheduled_at, :timeout
)

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

-- --------------------------------------------------------------------------- working (own)

-- name: first_available
-- The next job of :queue (none while the queue is paused).
SELECT id, rescues FROM /*prefix*/jobs
WHERE state = 'available' AND queue = :queue
    AND NOT EXISTS (SELECT 1 FROM /*prefix*/queue_pauses WHERE queue = :queue)
ORDER BY priority, scheduled_at, id
LIMIT 1

-- name: claim
UPDATE /*prefix*/jobs
SET state = 'running', attempt = attempt + 1, attempted_at = :now, attempted_by = :node
WHERE id IN (
    SELECT id FROM /*prefix*/jobs
    WHERE state = 'available' AND queue = :queue AND rescues < :isolate_after
        AND NOT EXISTS (SELECT 1 FROM /*prefix*/queue_pauses WHERE queue = :queue)
    ORDER BY priority, scheduled_at, id
    LIMIT :limit
)
RETURNING id, CAST(handler AS BLOB), CAST(event AS BLOB), CAST(queue AS BLOB), priority,
    attempt, max_attempts, CAST(payload AS BLOB), CAST(meta AS BLOB), inserted_at,
    scheduled_at, timeout, rescues

-- name: claim_one
UPDATE /*prefix*/jobs
SET state = 'running', attempt = attempt + 1, attempted_at = :now, attempted_by = :node
WHERE id = :id AND state = 'available'
RETURNING id, CAST(handler AS BLOB), CAST(event AS BLOB), CAST(queue AS BLOB), priority,
    attempt, max_attempts, CAST(payload AS BLOB), CAST(meta AS BLOB), inserted_at,
    scheduled_at, timeout, rescues

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
-- One decided end of a run, fenced on (id, running, attempt).
UPDATE /*prefix*/jobs SET
    state = :state,
    attempt = attempt - :refund,
    rescues = rescues + :rescued,
    scheduled_at = CASE WHEN :delay IS NULL THEN scheduled_at ELSE :now + :delay END,
    finalized_at = CASE WHEN :finalize THEN :now END,
    errors = CASE WHEN :error IS NULL THEN errors
        WHEN json_valid(errors) AND json_type(errors) = 'array'
            THEN json_insert(errors, '$[#]', json(:error))
        ELSE json_array(json(:error)) END
WHERE id = :id AND state = 'running' AND attempt = :attempt

-- -------------------------------------------------------------------- nodes and maintenance

-- name: heartbeat
INSERT INTO /*prefix*/nodes (node, heartbeat_at, expires_at) VALUES (:node, :now, :now + :ttl)
ON CONFLICT (node) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
    expires_at = excluded.expires_at

-- name: lost_runs
-- Of the runs :runs (a JSON array of [id, attempt]), those no longer running on :node.
SELECT json_extract(r.value, '$[0]') AS id
FROM json_each(:runs) AS r
WHERE NOT EXISTS (
    SELECT 1 FROM /*prefix*/jobs AS j
    WHERE j.id = json_extract(r.value, '$[0]') AND j.state = :running
        AND j.attempt = json_extract(r.value, '$[1]') AND j.attempted_by = :node
)

-- name: delete_node
DELETE FROM /*prefix*/nodes WHERE node = :node

-- name: elect
INSERT INTO /*prefix*/leader (id, node, expires_at) VALUES (1, :node, :now + :ttl)
ON CONFLICT (id) DO UPDATE SET node = excluded.node, expires_at = excluded.expires_at
WHERE /*prefix*/leader.node = excluded.node OR /*prefix*/leader.expires_at <= :now
RETURNING node

-- name: resign
DELETE FROM /*prefix*/leader WHERE node = :node

-- name: stage
-- Due scheduled/retryable jobs that hold their unique key (or have none) become available.
UPDATE /*prefix*/jobs SET state = 'available'
WHERE id IN (
    SELECT id FROM /*prefix*/jobs
    WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= :now
        AND (unique_key IS NULL OR unique_holder IS NOT NULL)
    ORDER BY scheduled_at, id
    LIMIT :limit
)
RETURNING queue

-- name: due_contested
-- Due jobs with a unique key they do not hold while waiting: (id, queue, attempt,
-- unique_states, state, now).
SELECT id, queue, attempt, unique_states, state, :now
FROM /*prefix*/jobs
WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= :now
    AND unique_key IS NOT NULL AND unique_holder IS NULL
ORDER BY scheduled_at, id
LIMIT :limit

-- name: key_holder
-- The job holding job :id's unique key, other than job :id.
SELECT h.id FROM /*prefix*/jobs AS j
JOIN /*prefix*/jobs AS h ON h.unique_holder = j.unique_key AND h.id <> j.id
WHERE j.id = :id

-- name: make_available
UPDATE /*prefix*/jobs SET state = 'available' WHERE id = :id AND state = :expect

-- name: set_state
-- A decided state change of a job that is not running (stage conflicts, admin cancel).
UPDATE /*prefix*/jobs SET
    state = :state,
    finalized_at = CASE WHEN :finalize THEN :now END,
    unique_states = :unique_states,
    errors = CASE WHEN :error IS NULL THEN errors
        WHEN json_valid(errors) AND json_type(errors) = 'array'
            THEN json_insert(errors, '$[#]', json(:error))
        ELSE json_array(json(:error)) END
WHERE id = :id AND state = :expect

-- name: rescue_candidates
-- Running jobs of expired nodes, and jobs running past timeout + grace: (id, attempt,
-- max_attempts, rescues, node, node_lost, now, handler, queue).
SELECT j.id, j.attempt, j.max_attempts, j.rescues, j.attempted_by,
    n.expires_at IS NULL OR n.expires_at <= :now AS node_lost, :now, j.handler, j.queue
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
        AND finalized_at <= :now - :keep
    ORDER BY finalized_at
    LIMIT :limit
)

-- ------------------------------------------------------------------------------------ admin

-- name: get_job
SELECT id, CAST(handler AS BLOB), CAST(event AS BLOB), CAST(queue AS BLOB), priority, state,
    attempt, max_attempts, CAST(payload AS BLOB), CAST(meta AS BLOB), CAST(errors AS BLOB),
    inserted_at, scheduled_at, attempted_at, CAST(attempted_by AS BLOB), finalized_at
FROM /*prefix*/jobs WHERE id = :id

-- name: list_jobs
SELECT id, CAST(handler AS BLOB), CAST(event AS BLOB), CAST(queue AS BLOB), priority, state,
    attempt, max_attempts, CAST(payload AS BLOB), CAST(meta AS BLOB), CAST(errors AS BLOB),
    inserted_at, scheduled_at, attempted_at, CAST(attempted_by AS BLOB), finalized_at
FROM /*prefix*/jobs
WHERE (:state IS NULL OR state = :state)
    AND (:queue IS NULL OR queue = :queue)
    AND (:handler IS NULL OR handler = :handler)
    AND (:after_id IS NULL OR id > :after_id)
    AND (:before_id IS NULL OR id < :before_id)
    AND (:text IS NULL OR instr(CAST(payload AS BLOB), CAST(:text AS BLOB)) > 0
        OR instr(CAST(meta AS BLOB), CAST(:text AS BLOB)) > 0)
ORDER BY CASE WHEN :newest THEN id END DESC, id
LIMIT :limit

-- name: lock_job
-- (state, attempt, max_attempts, has a unique key, unique_states, now); BEGIN IMMEDIATE locks.
SELECT state, attempt, max_attempts, unique_key IS NOT NULL, unique_states, :now
FROM /*prefix*/jobs WHERE id = :id

-- name: retry_job
UPDATE /*prefix*/jobs SET
    state = 'available',
    scheduled_at = :now,
    finalized_at = NULL,
    max_attempts = :max_attempts
WHERE id = :id

-- name: stats
SELECT queue, state, count(*) FROM /*prefix*/jobs GROUP BY queue, state

-- name: count_jobs
-- How many jobs match list_jobs' filters, counting at most :limit (a capped count).
SELECT count(*) FROM (
    SELECT 1 FROM /*prefix*/jobs
    WHERE (:state IS NULL OR state = :state)
        AND (:queue IS NULL OR queue = :queue)
        AND (:handler IS NULL OR handler = :handler)
        AND (:after_id IS NULL OR id > :after_id)
        AND (:before_id IS NULL OR id < :before_id)
        AND (:text IS NULL OR instr(CAST(payload AS BLOB), CAST(:text AS BLOB)) > 0
            OR instr(CAST(meta AS BLOB), CAST(:text AS BLOB)) > 0)
    LIMIT :limit
)

-- name: capped_stats
-- Job counts by queue and state, reading at most :cap jobs of each state, each through the
-- partial index of its state (never a scan of the whole table).
SELECT queue, state, count(*) FROM (
    SELECT * FROM (SELECT queue, state FROM /*prefix*/jobs
        WHERE state = 'scheduled' AND state IN ('scheduled', 'retryable') LIMIT :cap)
    UNION ALL SELECT * FROM (SELECT queue, state FROM /*prefix*/jobs
        WHERE state = 'available' LIMIT :cap)
    UNION ALL SELECT * FROM (SELECT queue, state FROM /*prefix*/jobs
        WHERE state = 'running' LIMIT :cap)
    UNION ALL SELECT * FROM (SELECT queue, state FROM /*prefix*/jobs
        WHERE state = 'retryable' AND state IN ('scheduled', 'retryable') LIMIT :cap)
    UNION ALL SELECT * FROM (SELECT queue, state FROM /*prefix*/jobs
        WHERE state = 'completed' AND state IN ('completed', 'cancelled', 'discarded') LIMIT :cap)
    UNION ALL SELECT * FROM (SELECT queue, state FROM /*prefix*/jobs
        WHERE state = 'cancelled' AND state IN ('completed', 'cancelled', 'discarded') LIMIT :cap)
    UNION ALL SELECT * FROM (SELECT queue, state FROM /*prefix*/jobs
        WHERE state = 'discarded' AND state IN ('completed', 'cancelled', 'discarded') LIMIT :cap)
)
GROUP BY queue, state

-- name: finished_buckets
-- Jobs finished in the last :window seconds, as (bucket, state, count): the window cut in
-- :buckets equal parts, 0 the oldest; read through the index of finished jobs.
SELECT CAST((finalized_at - (:now - :window)) * :buckets / :window AS INTEGER) AS bucket,
    state, count(*)
FROM /*prefix*/jobs
WHERE state IN ('completed', 'cancelled', 'discarded')
    AND finalized_at > :now - :window AND finalized_at <= :now
GROUP BY bucket, state

-- name: delete_job
-- The caller locked the job (lock_job) and checked that it is not running.
DELETE FROM /*prefix*/jobs WHERE id = :id AND state = :expect

-- name: nodes
-- Live nodes: (node, expires_at, leads, running jobs).
SELECT n.node, n.expires_at, coalesce(l.expires_at > :now, 0) AS leader,
    (SELECT count(*) FROM /*prefix*/jobs AS j
        WHERE j.state = 'running' AND j.attempted_by = n.node) AS running
FROM /*prefix*/nodes AS n
LEFT JOIN /*prefix*/leader AS l ON l.node = n.node
WHERE n.expires_at > :now
ORDER BY n.node

-- name: pause_queue
INSERT INTO /*prefix*/queue_pauses (queue, paused_at) VALUES (:queue, :now)
ON CONFLICT (queue) DO NOTHING

-- name: resume_queue
DELETE FROM /*prefix*/queue_pauses WHERE queue = :queue

-- name: paused_queues
SELECT queue FROM /*prefix*/queue_pauses ORDER BY queue
