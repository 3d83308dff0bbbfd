-- Named queries of the MySQL/MariaDB dialect. Values are always bound :name parameters
-- (compiled to the driver's pyformat); the only text substituted is the validated table prefix.
-- Wherever a query takes :now, NULL means the server's clock: /*fragment:now*/ reads
-- UTC_TIMESTAMP(6), which does not depend on the session time zone. Durations are seconds,
-- applied as INTERVAL ROUND(seconds * 1000000) MICROSECOND.
--
-- Neither server has UPDATE ... RETURNING, so a multi-row change is a locking SELECT (FOR
-- UPDATE SKIP LOCKED where a frozen node must block nobody) followed by an UPDATE by the sorted
-- primary keys: JSON_TABLE(:ids) STRAIGHT_JOIN jobs FORCE INDEX (PRIMARY), in list order, each row
-- found through the primary key (never a scan that locks rows the statement does not change).
-- Every ORDER BY ends with the primary key. Lists travel as one JSON array bind.
-- The queries apply the values the core decided (relaybus._jobrules): none chooses a state.
-- The text must contain no percent sign (pyformat).

-- fragment: now
CAST(COALESCE(:now, UTC_TIMESTAMP(6)) AS DATETIME(6))

-- fragment: append_error
CASE WHEN :error IS NULL THEN errors
    WHEN NOT JSON_VALID(errors) THEN JSON_ARRAY(JSON_EXTRACT(:error, '$'))
    WHEN JSON_TYPE(errors) <> 'ARRAY' THEN JSON_ARRAY(JSON_EXTRACT(:error, '$'))
    ELSE JSON_ARRAY_APPEND(errors, '$', JSON_EXTRACT(:error, '$')) END

-- -------------------------------------------------------------------------- connection (own)

-- name: session_isolation
-- Queue transactions run READ COMMITTED: no gap locks on scans (the statement form is the same
-- on both servers; the variable is tx_isolation on MariaDB, transaction_isolation on MySQL 8).
SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED

-- name: session_settings
SET SESSION time_zone = '+00:00',
    sql_mode = 'STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION',
    innodb_lock_wait_timeout = :lock_wait_timeout

-- name: server_info
SELECT VERSION(), @@innodb_autoinc_lock_mode, @@auto_increment_increment

-- name: db_now
SELECT /*fragment:now*/

-- name: ping
SELECT 1

-- -------------------------------------------------------------------------------- migrations

-- name: quiet_notes
SET SESSION sql_notes = 0

-- name: migrate_lock
-- A named lock of the session: held until the migrating connection closes (the store migrates
-- on a connection of its own).
SELECT GET_LOCK(:key, 300)

-- name: schema_exists
-- The database named in the DSN is the schema.
SELECT 1

-- name: create_schema
SELECT 1

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS /*prefix*/migrations (
    version    INT NOT NULL PRIMARY KEY,
    name       VARCHAR(128) NOT NULL,
    applied_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin

-- name: applied_migrations
SELECT version FROM /*prefix*/migrations ORDER BY version

-- name: record_migration
INSERT INTO /*prefix*/migrations (version, name, applied_at)
VALUES (:version, :name, /*fragment:now*/)

-- ------------------------------------------------------------------------ inserting (own)

-- name: insert_job
-- One job (unique or not). A unique job whose key is held fails with 1062 (duplicate entry):
-- InnoDB rolls back that statement only, and the caller looks the holder up.
INSERT INTO /*prefix*/jobs (
    handler, event, queue, priority, state, max_attempts, payload, meta, errors,
    inserted_at, scheduled_at, timeout, unique_key, unique_states
) SELECT :handler, :event, :queue, :priority, :state, :max_attempts, :payload, :meta, '[]',
    t.now, COALESCE(:scheduled_at, t.now), :timeout, :unique_key, :unique_states
FROM (SELECT /*fragment:now*/ AS now) AS t

-- fragment: batch_select
SELECT b.handler, b.event, b.queue, b.priority, b.state, b.max_attempts, b.payload, b.meta,
    '[]', t.now, COALESCE(b.scheduled_at, t.now), b.timeout
FROM (SELECT CAST(COALESCE(:now, UTC_TIMESTAMP(6)) AS DATETIME(6)) AS now) AS t
JOIN JSON_TABLE(:jobs, '$[*]' COLUMNS (
    ord          FOR ORDINALITY,
    handler      VARCHAR(255) PATH '$[0]',
    event        VARCHAR(1024) PATH '$[1]',
    queue        VARCHAR(128) PATH '$[2]',
    priority     SMALLINT PATH '$[3]',
    state        VARCHAR(16) PATH '$[4]',
    max_attempts INT PATH '$[5]',
    payload      LONGTEXT PATH '$[6]',
    meta         LONGTEXT PATH '$[7]',
    timeout      DOUBLE PATH '$[8]',
    scheduled_at DATETIME(6) PATH '$[9]'
)) AS b
ORDER BY b.ord

-- name: insert_batch
-- Jobs without unique keys, one statement over one JSON array of the batch (each entry
-- [handler, event, queue, priority, state, max_attempts, payload, meta, timeout,
-- scheduled_at]); rows are inserted in input order and their ids come back (MariaDB 10.5+).
INSERT INTO /*prefix*/jobs (
    handler, event, queue, priority, state, max_attempts, payload, meta, errors,
    inserted_at, scheduled_at, timeout
) /*fragment:batch_select*/
RETURNING id

-- name: insert_batch_consecutive
-- MySQL 8 (no RETURNING; UNTESTED here): the same insert, used only when the server allocates
-- one statement's ids consecutively (innodb_autoinc_lock_mode 0 or 1); the ids are then
-- LAST_INSERT_ID() + i * auto_increment_increment.
INSERT INTO /*prefix*/jobs (
    handler, event, queue, priority, state, max_attempts, payload, meta, errors,
    inserted_at, scheduled_at, timeout
) /*fragment:batch_select*/

-- name: find_holder
-- The job holding a unique key, locked before it is replaced (no lock upgrade later).
SELECT id, state FROM /*prefix*/jobs WHERE unique_holder = :unique_key FOR UPDATE

-- name: replace_job
UPDATE /*prefix*/jobs SET
    payload = IF(:set_payload, :payload, payload),
    meta = IF(:set_meta, :meta, meta),
    priority = IF(:set_priority, :priority, priority),
    queue = IF(:set_queue, :queue, queue),
    max_attempts = IF(:set_max_attempts, :max_attempts, max_attempts),
    scheduled_at = IF(:set_scheduled_at, COALESCE(:scheduled_at, /*fragment:now*/), scheduled_at),
    state = :state
WHERE id = :id

-- -------------------------------------------------------------------------- working (own)

-- fragment: fetch_select
-- The claim's read, in two parts. The candidates: the first :window available jobs of :queue
-- in run order, a plain (non-locking) read of fetch_idx alone (equality on state and queue,
-- then the index order: no filesort). Then the lock: each candidate, in that order, by primary
-- key, FOR UPDATE SKIP LOCKED, re-checked (still available in :queue), until :limit are
-- locked. The locking clause does not reach into the derived table (a locking read locks no
-- rows of a nested query that has no locking clause of its own), so only the rows returned
-- are locked. Why not one locking read of fetch_idx: every claim leaves the old index entries
-- of the rows it claimed delete-marked until InnoDB's purge removes them, and a locking scan
-- takes and drops a lock on each one it passes; while jobs flow, that was most of the claim's
-- time (2 ms per 20 jobs against 0.3 ms for the plain read of the same entries). Suspects
-- (rescues >= :isolate_after) only for an idle node, which then takes the first row alone if
-- it is one. The claim columns, attempt before the claim.
SELECT j.id, j.handler, j.event, j.queue, j.priority, j.attempt, j.max_attempts, j.payload,
    j.meta, j.inserted_at, j.scheduled_at, j.timeout, j.rescues
FROM (
    SELECT c.id FROM /*prefix*/jobs AS c FORCE INDEX (fetch_idx)
    WHERE c.state = 'available' AND c.queue = :queue
        AND NOT EXISTS (SELECT 1 FROM /*prefix*/queue_pauses AS p WHERE p.queue = :queue)
    ORDER BY c.priority, c.scheduled_at, c.id
    LIMIT :window
) AS candidates
STRAIGHT_JOIN /*prefix*/jobs AS j FORCE INDEX (PRIMARY) ON j.id = candidates.id
WHERE j.state = 'available' AND j.queue = :queue AND (j.rescues < :isolate_after OR :idle)
LIMIT :limit
FOR UPDATE SKIP LOCKED

-- name: fetch
/*fragment:fetch_select*/

-- name: end_runs_then_fetch
-- A fetch that carries the node's finished runs: end_runs, then fetch, in one query (two
-- statements: both servers take several in one round trip; the rows are fetch's).
/*fragment:end_runs_update*/;
/*fragment:fetch_select*/

-- name: claim
-- The locked rows of fetch (:ids, sorted) become running for :node.
UPDATE JSON_TABLE(:ids, '$[*]' COLUMNS (id BIGINT PATH '$')) AS r
STRAIGHT_JOIN /*prefix*/jobs AS j FORCE INDEX (PRIMARY) ON j.id = r.id
SET j.state = 'running', j.attempt = j.attempt + 1, j.attempted_at = /*fragment:now*/,
    j.attempted_by = :node
WHERE j.state = 'available'

-- name: lock_runs
-- Of the runs :runs ([[id, attempt], ...], sorted by id), those still running that attempt,
-- locked in id order (the fence of every completion): (id, attempt).
SELECT j.id, j.attempt
FROM JSON_TABLE(:runs, '$[*]' COLUMNS (id BIGINT PATH '$[0]', attempt INT PATH '$[1]')) AS r
STRAIGHT_JOIN /*prefix*/jobs AS j FORCE INDEX (PRIMARY) ON j.id = r.id
WHERE j.state = 'running' AND j.attempt = r.attempt
FOR UPDATE

-- fragment: end_runs_update
-- Apply decided run ends by primary key (in id order, so concurrent writers lock alike),
-- fenced on (running, attempt): a run that is no longer current is left alone. :ends is
-- [[id, attempt, state, refund, rescued, delay, finalize, error], ...] sorted by id; delay
-- NULL keeps scheduled_at; error is a JSON object's text or NULL.
UPDATE JSON_TABLE(:ends, '$[*]' COLUMNS (
    id       BIGINT PATH '$[0]',
    attempt  INT PATH '$[1]',
    state    VARCHAR(16) PATH '$[2]',
    refund   INT PATH '$[3]',
    rescued  INT PATH '$[4]',
    delay    DOUBLE PATH '$[5]',
    finalize INT PATH '$[6]',
    error    LONGTEXT PATH '$[7]'
)) AS c
STRAIGHT_JOIN /*prefix*/jobs AS j FORCE INDEX (PRIMARY) ON j.id = c.id
SET j.state = c.state,
    j.attempt = j.attempt - c.refund,
    j.rescues = j.rescues + c.rescued,
    j.scheduled_at = IF(c.delay IS NULL, j.scheduled_at,
        /*fragment:now*/ + INTERVAL ROUND(c.delay * 1000000) MICROSECOND),
    j.finalized_at = IF(c.finalize, /*fragment:now*/, NULL),
    j.errors = CASE WHEN c.error IS NULL THEN j.errors
        WHEN NOT JSON_VALID(j.errors) THEN JSON_ARRAY(JSON_EXTRACT(c.error, '$'))
        WHEN JSON_TYPE(j.errors) <> 'ARRAY' THEN JSON_ARRAY(JSON_EXTRACT(c.error, '$'))
        ELSE JSON_ARRAY_APPEND(j.errors, '$', JSON_EXTRACT(c.error, '$')) END
WHERE j.state = 'running' AND j.attempt = c.attempt

-- fragment: complete_runs_update
-- The common case of end_runs_update, leaner for the server: every end in :runs
-- ([[id, attempt], ...] sorted by id) is a plain completion (completed, no error, no refund,
-- no rescue, scheduled_at kept), fenced on (running, attempt) alike.
UPDATE JSON_TABLE(:runs, '$[*]' COLUMNS (id BIGINT PATH '$[0]', attempt INT PATH '$[1]')) AS r
STRAIGHT_JOIN /*prefix*/jobs AS j FORCE INDEX (PRIMARY) ON j.id = r.id
SET j.state = 'completed', j.finalized_at = /*fragment:now*/
WHERE j.state = 'running' AND j.attempt = r.attempt

-- name: complete_runs
-- end_runs when every end is a plain completion.
/*fragment:complete_runs_update*/

-- name: complete_runs_then_fetch
-- end_runs_then_fetch when every carried end is a plain completion.
/*fragment:complete_runs_update*/;
/*fragment:fetch_select*/

-- name: end_runs
-- complete_many: after lock_runs told which runs are still current (their ids are the answer).
/*fragment:end_runs_update*/

-- name: release_orphans
-- Jobs :node claimed in a fetch whose answer never reached it (the connection dropped after
-- the claim committed): running there, yet not among :handed (a JSON array of the ids the node
-- was handed and has not finished). Back to available with the attempt refunded, keeping
-- their place in line.
UPDATE /*prefix*/jobs FORCE INDEX (running_idx)
SET state = 'available', attempt = attempt - 1
WHERE state = 'running' AND attempted_by = :node
    AND NOT JSON_CONTAINS(:handed, CAST(id AS CHAR))

-- ------------------------------------------------------------------- nodes and maintenance

-- name: heartbeat
-- No VALUES() in the update (deprecated in MySQL 8.0.20): the expression is repeated.
INSERT INTO /*prefix*/nodes (node, expires_at)
VALUES (:node, /*fragment:now*/ + INTERVAL ROUND(:ttl * 1000000) MICROSECOND)
ON DUPLICATE KEY UPDATE
    expires_at = /*fragment:now*/ + INTERVAL ROUND(:ttl * 1000000) MICROSECOND

-- name: lost_runs
-- Of the runs :runs ([[id, attempt], ...]), those no longer running on :node.
SELECT r.id
FROM JSON_TABLE(:runs, '$[*]' COLUMNS (id BIGINT PATH '$[0]', attempt INT PATH '$[1]')) AS r
WHERE NOT EXISTS (
    SELECT 1 FROM /*prefix*/jobs AS j
    WHERE j.id = r.id AND j.state = :running AND j.attempt = r.attempt
        AND j.attempted_by = :node
)

-- name: delete_node
DELETE FROM /*prefix*/nodes WHERE node = :node

-- name: elect
-- Take the lease when it is free or expired, renew it when :node holds it; then a row when
-- :node leads. Run outside a transaction (MySQLDialect.elect): the upsert commits on its own,
-- so a node frozen after sending it (SIGSTOP, a VM pause) leaves no lock on the leader row
-- behind, which every other node's election would wait for. Assignments of ON DUPLICATE KEY
-- UPDATE apply left to right: expires_at reads the node just assigned.
INSERT INTO /*prefix*/leader (id, node, expires_at)
VALUES (1, :node, /*fragment:now*/ + INTERVAL ROUND(:ttl * 1000000) MICROSECOND)
ON DUPLICATE KEY UPDATE
    node = IF(node = :node OR expires_at <= /*fragment:now*/, :node, node),
    expires_at = IF(node = :node,
        /*fragment:now*/ + INTERVAL ROUND(:ttl * 1000000) MICROSECOND, expires_at);
SELECT node FROM /*prefix*/leader WHERE id = 1 AND node = :node

-- name: resign
DELETE FROM /*prefix*/leader WHERE node = :node

-- name: stage
-- The stager's locking read: up to :limit due scheduled/retryable jobs that hold their unique
-- key (or have none), in due order through due_idx: (id, queue).
SELECT id, queue FROM /*prefix*/jobs FORCE INDEX (due_idx)
WHERE due_at <= /*fragment:now*/
    AND (unique_key IS NULL OR unique_holder IS NOT NULL)
ORDER BY due_at, id
LIMIT :limit
FOR UPDATE SKIP LOCKED

-- name: make_available_many
-- The rows locked by stage (:ids, sorted) become available.
UPDATE JSON_TABLE(:ids, '$[*]' COLUMNS (id BIGINT PATH '$')) AS r
STRAIGHT_JOIN /*prefix*/jobs AS j FORCE INDEX (PRIMARY) ON j.id = r.id
SET j.state = 'available'
WHERE j.state IN ('scheduled', 'retryable')

-- name: due_contested
-- Due jobs with a unique key they do not hold while waiting: (id, queue, attempt,
-- unique_states, state, now).
SELECT id, queue, attempt, unique_states, state, /*fragment:now*/
FROM /*prefix*/jobs FORCE INDEX (due_idx)
WHERE due_at <= /*fragment:now*/
    AND unique_key IS NOT NULL AND unique_holder IS NULL
ORDER BY due_at, id
LIMIT :limit

-- name: key_holder
-- The job holding job :id's unique key, other than job :id.
SELECT h.id FROM /*prefix*/jobs AS j
JOIN /*prefix*/jobs AS h ON h.unique_holder = j.unique_key AND h.id <> j.id
WHERE j.id = :id
LIMIT 1

-- name: make_available
-- A unique violation here means a holder committed meanwhile: the caller runs again.
UPDATE /*prefix*/jobs SET state = 'available' WHERE id = :id AND state = :expect

-- name: set_state
-- A decided state change of a job that is not running (stage conflicts, admin cancel).
UPDATE /*prefix*/jobs SET
    state = :state,
    finalized_at = IF(:finalize, /*fragment:now*/, NULL),
    unique_states = :unique_states,
    errors = /*fragment:append_error*/
WHERE id = :id AND state = :expect

-- name: rescue_candidates
-- Running jobs of expired nodes, and jobs running past timeout + grace, locked and skipping
-- locked rows (a frozen node's row locks block nobody): (id, attempt, max_attempts, rescues,
-- node, node_lost, now, handler, queue). Read through running_idx in its order. The nodes are
-- read by subqueries, which a locking read does not lock: a join would lock (and, with SKIP
-- LOCKED, skip) node rows too, so a live node whose heartbeat transaction held its row for a
-- moment looked lost.
SELECT j.id, j.attempt, j.max_attempts, j.rescues, j.attempted_by,
    NOT EXISTS (
        SELECT 1 FROM /*prefix*/nodes AS n
        WHERE n.node = j.attempted_by AND n.expires_at > /*fragment:now*/
    ) AS node_lost,
    /*fragment:now*/, j.handler, j.queue
FROM /*prefix*/jobs AS j FORCE INDEX (running_idx)
WHERE j.state = 'running' AND (
    NOT EXISTS (
        SELECT 1 FROM /*prefix*/nodes AS n
        WHERE n.node = j.attempted_by AND n.expires_at > /*fragment:now*/
    )
    OR (j.timeout IS NOT NULL AND j.attempted_at
        + INTERVAL ROUND((j.timeout + :grace) * 1000000) MICROSECOND < /*fragment:now*/)
)
ORDER BY j.attempted_by, j.id
LIMIT :limit
FOR UPDATE SKIP LOCKED

-- name: prune
-- The pruner's locking read: up to :limit finished jobs of :state older than :keep seconds,
-- oldest first through finished_idx.
SELECT id FROM /*prefix*/jobs FORCE INDEX (finished_idx)
WHERE state = :state AND state IN ('completed', 'cancelled', 'discarded')
    AND finalized_at <= /*fragment:now*/ - INTERVAL ROUND(:keep * 1000000) MICROSECOND
ORDER BY finalized_at, id
LIMIT :limit
FOR UPDATE SKIP LOCKED

-- name: delete_jobs
-- The rows locked by prune (:ids, sorted), by primary key.
DELETE j FROM JSON_TABLE(:ids, '$[*]' COLUMNS (id BIGINT PATH '$')) AS r
STRAIGHT_JOIN /*prefix*/jobs AS j FORCE INDEX (PRIMARY) ON j.id = r.id

-- ------------------------------------------------------------------------------------ admin

-- name: get_job
SELECT id, handler, event, queue, priority, state, attempt, max_attempts, payload, meta,
    errors, inserted_at, scheduled_at, attempted_at, attempted_by, finalized_at
FROM /*prefix*/jobs WHERE id = :id

-- name: list_jobs
SELECT id, handler, event, queue, priority, state, attempt, max_attempts, payload, meta,
    errors, inserted_at, scheduled_at, attempted_at, attempted_by, finalized_at
FROM /*prefix*/jobs
WHERE (:state IS NULL OR state = :state)
    AND (:queue IS NULL OR queue = :queue)
    AND (:handler IS NULL OR handler = :handler)
    AND (:after_id IS NULL OR id > :after_id)
    AND (:before_id IS NULL OR id < :before_id)
    AND (:text IS NULL OR LOCATE(:text, payload) > 0 OR LOCATE(:text, meta) > 0)
ORDER BY CASE WHEN :newest THEN id END DESC, id
LIMIT :limit

-- name: lock_job
-- Lock one job for an admin change: (state, attempt, max_attempts, has a unique key,
-- unique_states, now).
SELECT state, attempt, max_attempts, unique_key IS NOT NULL, unique_states, /*fragment:now*/
FROM /*prefix*/jobs WHERE id = :id
FOR UPDATE

-- name: retry_job
UPDATE /*prefix*/jobs SET
    state = 'available',
    scheduled_at = /*fragment:now*/,
    finalized_at = NULL,
    max_attempts = :max_attempts
WHERE id = :id

-- name: stats
SELECT queue, state, COUNT(*) FROM /*prefix*/jobs GROUP BY queue, state

-- name: count_jobs
-- How many jobs match list_jobs' filters, counting at most :limit (a capped count).
SELECT COUNT(*) FROM (
    SELECT 1 FROM /*prefix*/jobs
    WHERE (:state IS NULL OR state = :state)
        AND (:queue IS NULL OR queue = :queue)
        AND (:handler IS NULL OR handler = :handler)
        AND (:after_id IS NULL OR id > :after_id)
        AND (:before_id IS NULL OR id < :before_id)
        AND (:text IS NULL OR LOCATE(:text, payload) > 0 OR LOCATE(:text, meta) > 0)
    LIMIT :limit
) AS matching

-- name: capped_stats
-- Job counts by queue and state, reading at most :cap jobs of each state, each through an
-- index that starts with the state (never a scan of the whole table).
SELECT queue, state, COUNT(*) FROM (
    (SELECT queue, state FROM /*prefix*/jobs WHERE state = 'scheduled' LIMIT :cap)
    UNION ALL (SELECT queue, state FROM /*prefix*/jobs WHERE state = 'available' LIMIT :cap)
    UNION ALL (SELECT queue, state FROM /*prefix*/jobs WHERE state = 'running' LIMIT :cap)
    UNION ALL (SELECT queue, state FROM /*prefix*/jobs WHERE state = 'retryable' LIMIT :cap)
    UNION ALL (SELECT queue, state FROM /*prefix*/jobs WHERE state = 'completed' LIMIT :cap)
    UNION ALL (SELECT queue, state FROM /*prefix*/jobs WHERE state = 'cancelled' LIMIT :cap)
    UNION ALL (SELECT queue, state FROM /*prefix*/jobs WHERE state = 'discarded' LIMIT :cap)
) AS capped
GROUP BY queue, state

-- name: finished_buckets
-- Jobs finished in the last :window seconds, as (bucket, state, count): the window cut in
-- :buckets equal parts, 0 the oldest; read through finished_idx.
SELECT FLOOR(TIMESTAMPDIFF(MICROSECOND, t.since, j.finalized_at) * :buckets
        / (:window * 1000000)) AS bucket,
    j.state, COUNT(*)
FROM (SELECT /*fragment:now*/ AS now,
        /*fragment:now*/ - INTERVAL ROUND(:window * 1000000) MICROSECOND AS since) AS t
STRAIGHT_JOIN /*prefix*/jobs AS j FORCE INDEX (finished_idx)
WHERE j.state IN ('completed', 'cancelled', 'discarded')
    AND j.finalized_at > t.since AND j.finalized_at <= t.now
GROUP BY bucket, j.state

-- name: delete_job
-- The caller locked the job (lock_job) and checked that it is not running.
DELETE FROM /*prefix*/jobs WHERE id = :id AND state = :expect

-- name: nodes
-- Live nodes: (node, expires_at, leads, running jobs).
SELECT n.node, n.expires_at, COALESCE(l.expires_at > /*fragment:now*/, 0) AS leader,
    (SELECT COUNT(*) FROM /*prefix*/jobs AS j
        WHERE j.state = 'running' AND j.attempted_by = n.node) AS running
FROM /*prefix*/nodes AS n
LEFT JOIN /*prefix*/leader AS l ON l.node = n.node
WHERE n.expires_at > /*fragment:now*/
ORDER BY n.node

-- name: pause_queue
INSERT IGNORE INTO /*prefix*/queue_pauses (queue, paused_at) VALUES (:queue, /*fragment:now*/)

-- name: resume_queue
DELETE FROM /*prefix*/queue_pauses WHERE queue = :queue

-- name: paused_queues
SELECT queue FROM /*prefix*/queue_pauses ORDER BY queue

-- --------------------------------------------------------- transactions (SQLAlchemy executor)
-- A client library whose connections run in autocommit starts and ends the core's
-- transactions with these statements.

-- name: begin
START TRANSACTION

-- name: commit
COMMIT

-- name: rollback
ROLLBACK
