-- Named queries of PostgresStore. Values are always bound parameters; the only text substituted
-- is the validated schema and table prefix, at their markers. Wherever a query takes `now`, NULL
-- means the database clock: coalesce($n::timestamptz, now()).

-- ---------------------------------------------------------------------------------- migrations

-- name: migrate_lock
SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0));

-- name: schema_exists
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1::text);

-- name: create_schema
CREATE SCHEMA /*schema*/;

-- name: migrations_table_exists
SELECT to_regclass($1::text) IS NOT NULL;

-- name: applied_versions
SELECT version FROM /*schema*/./*prefix*/migrations ORDER BY version;

-- name: record_version
INSERT INTO /*schema*/./*prefix*/migrations (version, name) VALUES ($1, $2)
ON CONFLICT (version) DO NOTHING;

-- ------------------------------------------------------------------------------------ inserting

-- name: insert_one
-- One job without a unique key: one autocommit statement, NOTIFY included.
-- $1 now, $2 handler, $3 event, $4 queue, $5 priority, $6 max_attempts, $7 payload, $8 meta,
-- $9 timeout, $10 delay, $11 at, $12 channel.
INSERT INTO /*schema*/./*prefix*/jobs (
    handler, event, queue, priority, state, max_attempts, payload, meta,
    inserted_at, scheduled_at, timeout
)
SELECT $2::text, $3::text, $4::text, $5::smallint,
    CASE WHEN t.sched > t.now THEN 'scheduled' ELSE 'available' END,
    $6::integer, $7::text, $8::text::jsonb, t.now, t.sched, $9::float8
FROM (
    SELECT n.now, coalesce($11::timestamptz, n.now + make_interval(secs => $10::float8), n.now)
        AS sched
    FROM (SELECT coalesce($1::timestamptz, now()) AS now) n
) t
RETURNING id, CASE WHEN state = 'available' THEN pg_notify($12::text, queue) END IS NULL;

-- name: insert_plain
-- Jobs without unique keys: one INSERT ... SELECT FROM unnest; ids in input order.
-- $1 now, $2 payloads; then each other column twice: as an array (one value per job) or, when
-- every job has the same value, NULL and that value alone (the client then neither builds nor
-- encodes an array, and unnest pads the missing column with NULLs):
-- $3/$4 handler, $5/$6 event, $7/$8 queue, $9/$10 priority, $11/$12 max_attempts,
-- $13/$14 meta, $15/$16 timeout, $17/$18 delay, $19/$20 at; $21 channel.
WITH n AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
ins AS (
    INSERT INTO /*schema*/./*prefix*/jobs (
        handler, event, queue, priority, state, max_attempts, payload, meta,
        inserted_at, scheduled_at, timeout
    )
    SELECT i.handler, i.event, i.queue, i.priority,
        CASE WHEN i.sched > i.now THEN 'scheduled' ELSE 'available' END,
        i.max_attempts, i.payload, i.meta::jsonb, i.now, i.sched, i.timeout
    FROM (
        SELECT u.payload, n.now,
            coalesce(u.handler, $4::text) AS handler,
            coalesce(u.event, $6::text) AS event,
            coalesce(u.queue, $8::text) AS queue,
            coalesce(u.priority, $10::smallint) AS priority,
            coalesce(u.max_attempts, $12::integer) AS max_attempts,
            coalesce(u.meta, $14::text) AS meta,
            coalesce(u.timeout, $16::float8) AS timeout,
            coalesce(
                coalesce(u.at, $20::timestamptz),
                n.now + make_interval(secs => coalesce(u.delay, $18::float8)),
                n.now
            ) AS sched
        FROM n, unnest(
            $2::text[], $3::text[], $5::text[], $7::text[], $9::smallint[], $11::integer[],
            $13::text[], $15::float8[], $17::float8[], $19::timestamptz[]
        ) WITH ORDINALITY AS u(
            payload, handler, event, queue, priority, max_attempts, meta, timeout, delay, at, ord
        )
        ORDER BY u.ord
    ) i
    RETURNING id, state, queue
),
notified AS (
    SELECT pg_notify($21::text, q.queue)
    FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') q
)
SELECT array_agg(id ORDER BY id) AS ids, (SELECT count(*) FROM notified) AS notified
FROM ins;

-- name: insert_unique_one
-- One unique job: insert_unique for a single entry, in a lighter statement (no ordinality,
-- window or mapping joins). Same parameters as insert_one, plus $13 base key, $14 period (NULL:
-- the key is final), $15 unique_states, $16-$18 replace masks (available, scheduled,
-- retryable). Returns (id, outcome); no row when the key was taken concurrently: run again.
WITH t AS MATERIALIZED (
    SELECT n.now,
        coalesce($11::timestamptz, n.now + make_interval(secs => $10::float8), n.now) AS sched,
        CASE WHEN $14::float8 IS NULL THEN $13::bytea
            ELSE sha256($13::bytea || convert_to(
                ':' || floor(extract(epoch FROM n.now) / $14::float8::numeric)::bigint::text,
                'UTF8'
            ))
        END AS ukey
    FROM (SELECT coalesce($1::timestamptz, now()) AS now) n
),
old AS MATERIALIZED (
    SELECT j.id, j.state,
        CASE j.state
            WHEN 'available' THEN $16::integer
            WHEN 'scheduled' THEN $17::integer
            WHEN 'retryable' THEN $18::integer
            ELSE 0
        END AS rep
    FROM t
    JOIN /*schema*/./*prefix*/jobs j
        ON j.unique_key = t.ukey
        AND /*schema*/./*prefix*/holds_key(j.unique_states, j.state)
    FOR NO KEY UPDATE OF j
),
upd AS (
    UPDATE /*schema*/./*prefix*/jobs j SET
        payload = CASE WHEN o.rep & 1 <> 0 THEN $7::text ELSE j.payload END,
        meta = CASE WHEN o.rep & 2 <> 0 THEN $8::text::jsonb ELSE j.meta END,
        priority = CASE WHEN o.rep & 4 <> 0 THEN $5::smallint ELSE j.priority END,
        queue = CASE WHEN o.rep & 8 <> 0 THEN $4::text ELSE j.queue END,
        max_attempts = CASE WHEN o.rep & 32 <> 0 THEN $6::integer ELSE j.max_attempts END,
        scheduled_at = CASE WHEN o.rep & 16 <> 0 THEN t.sched ELSE j.scheduled_at END,
        state = CASE
            WHEN o.rep & 16 = 0 OR j.state = 'retryable' THEN j.state
            WHEN t.sched > t.now THEN 'scheduled'
            ELSE 'available'
        END
    FROM old o, t
    WHERE j.id = o.id AND o.rep <> 0 AND o.state <> 'running'
    RETURNING j.id, j.state, j.queue
),
ins AS (
    INSERT INTO /*schema*/./*prefix*/jobs (
        handler, event, queue, priority, state, max_attempts, payload, meta,
        inserted_at, scheduled_at, timeout, unique_key, unique_states
    )
    SELECT $2::text, $3::text, $4::text, $5::smallint,
        CASE WHEN t.sched > t.now THEN 'scheduled' ELSE 'available' END,
        $6::integer, $7::text, $8::text::jsonb, t.now, t.sched, $9::float8,
        t.ukey, $15::integer
    FROM t
    WHERE NOT EXISTS (SELECT 1 FROM old)
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL
        AND /*schema*/./*prefix*/holds_key(unique_states, state)
        DO NOTHING
    RETURNING id, state, queue
),
result AS (
    SELECT o.id, CASE WHEN EXISTS (SELECT 1 FROM upd) THEN 'replaced' ELSE 'duplicate' END
        AS outcome
    FROM old o
    UNION ALL
    SELECT id, 'inserted' FROM ins
)
SELECT r.id, r.outcome, (
    SELECT count(pg_notify($12::text, q.queue))
    FROM (
        SELECT queue FROM ins WHERE state = 'available'
        UNION
        SELECT queue FROM upd WHERE state = 'available'
    ) q
) AS notified
FROM result r;

-- name: insert_unique
-- One round of a batch with unique jobs, each unique key at most once in the round. Existing
-- holders are locked and either replaced (the fields their state lists) or reported as the
-- duplicate; the other entries are inserted, ON CONFLICT DO NOTHING: an entry whose key was
-- taken concurrently comes back without an id and the caller runs it again.
-- Replace masks: payload 1, meta 2, priority 4, queue 8, scheduled_at 16, max_attempts 32.
-- $1 now, $2 handlers, $3 events, $4 queues, $5 priorities, $6 max_attempts, $7 payloads,
-- $8 metas, $9 timeouts, $10 delays, $11 ats, $12 base keys, $13 periods (NULL: the key is
-- final), $14 unique_states, $15 replace masks when available, $16 when scheduled,
-- $17 when retryable, $18 channel.
-- Returns (ord, id, outcome) per entry; id is NULL for an entry to run again.
WITH n AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
input AS MATERIALIZED (
    -- key_rank: entries sharing a final key (only when two groups' buckets collide) after the
    -- first wait for the next round.
    SELECT k.*, row_number() OVER (PARTITION BY k.ukey ORDER BY k.ord) AS key_rank
    FROM (
        SELECT u.ord, u.handler, u.event, u.queue, u.priority, u.max_attempts, u.payload, u.meta,
            u.timeout, u.unique_states, u.rep_available, u.rep_scheduled, u.rep_retryable,
            n.now,
            coalesce(u.at, n.now + make_interval(secs => u.delay), n.now) AS sched,
            CASE WHEN u.base_key IS NULL OR u.period IS NULL THEN u.base_key
                ELSE sha256(u.base_key || convert_to(
                    ':' || floor(extract(epoch FROM n.now) / u.period::numeric)::bigint::text,
                    'UTF8'
                ))
            END AS ukey
        FROM n, unnest(
            $2::text[], $3::text[], $4::text[], $5::smallint[], $6::integer[], $7::text[],
            $8::text[], $9::float8[], $10::float8[], $11::timestamptz[], $12::bytea[],
            $13::float8[], $14::integer[], $15::integer[], $16::integer[], $17::integer[]
        ) WITH ORDINALITY AS u(
            handler, event, queue, priority, max_attempts, payload, meta, timeout, delay, at,
            base_key, period, unique_states, rep_available, rep_scheduled, rep_retryable, ord
        )
    ) k
),
old AS MATERIALIZED (
    SELECT j.id, j.state, i.ord,
        CASE j.state
            WHEN 'available' THEN i.rep_available
            WHEN 'scheduled' THEN i.rep_scheduled
            WHEN 'retryable' THEN i.rep_retryable
            ELSE 0
        END AS rep
    FROM input i
    JOIN /*schema*/./*prefix*/jobs j
        ON j.unique_key = i.ukey
        AND /*schema*/./*prefix*/holds_key(j.unique_states, j.state)
    WHERE i.ukey IS NOT NULL AND i.key_rank = 1
    ORDER BY j.id
    FOR NO KEY UPDATE OF j
),
upd AS (
    UPDATE /*schema*/./*prefix*/jobs j SET
        payload = CASE WHEN o.rep & 1 <> 0 THEN i.payload ELSE j.payload END,
        meta = CASE WHEN o.rep & 2 <> 0 THEN i.meta::jsonb ELSE j.meta END,
        priority = CASE WHEN o.rep & 4 <> 0 THEN i.priority ELSE j.priority END,
        queue = CASE WHEN o.rep & 8 <> 0 THEN i.queue ELSE j.queue END,
        max_attempts = CASE WHEN o.rep & 32 <> 0 THEN i.max_attempts ELSE j.max_attempts END,
        scheduled_at = CASE WHEN o.rep & 16 <> 0 THEN i.sched ELSE j.scheduled_at END,
        state = CASE
            WHEN o.rep & 16 = 0 OR j.state = 'retryable' THEN j.state
            WHEN i.sched > i.now THEN 'scheduled'
            ELSE 'available'
        END
    FROM old o
    JOIN input i ON i.ord = o.ord
    WHERE j.id = o.id AND o.rep <> 0 AND o.state <> 'running'
    RETURNING o.ord, j.state, j.queue
),
ins AS (
    INSERT INTO /*schema*/./*prefix*/jobs (
        handler, event, queue, priority, state, max_attempts, payload, meta,
        inserted_at, scheduled_at, timeout, unique_key, unique_states
    )
    SELECT i.handler, i.event, i.queue, i.priority,
        CASE WHEN i.sched > i.now THEN 'scheduled' ELSE 'available' END,
        i.max_attempts, i.payload, i.meta::jsonb, i.now, i.sched, i.timeout,
        i.ukey, CASE WHEN i.ukey IS NULL THEN 0 ELSE i.unique_states END
    FROM input i
    WHERE (i.ukey IS NULL OR i.key_rank = 1)
        AND NOT EXISTS (SELECT 1 FROM old o WHERE o.ord = i.ord)
    ORDER BY i.ord
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL
        AND /*schema*/./*prefix*/holds_key(unique_states, state)
        DO NOTHING
    RETURNING id, unique_key, state, queue
),
plain_ids AS (
    SELECT id, row_number() OVER (ORDER BY id) AS rn FROM ins WHERE unique_key IS NULL
),
plain_ords AS (
    SELECT ord, row_number() OVER (ORDER BY ord) AS rn FROM input WHERE ukey IS NULL
),
notified AS (
    SELECT pg_notify($18::text, q.queue)
    FROM (
        SELECT queue FROM ins WHERE state = 'available'
        UNION
        SELECT queue FROM upd WHERE state = 'available'
    ) q
)
SELECT i.ord,
    coalesce(o.id, x.id, p.id) AS id,
    CASE
        WHEN u.ord IS NOT NULL THEN 'replaced'
        WHEN o.id IS NOT NULL THEN 'duplicate'
        ELSE 'inserted'
    END AS outcome,
    (SELECT count(*) FROM notified) AS notified
FROM input i
LEFT JOIN old o ON o.ord = i.ord
LEFT JOIN upd u ON u.ord = i.ord
LEFT JOIN ins x ON i.ukey IS NOT NULL AND i.key_rank = 1 AND x.unique_key = i.ukey
LEFT JOIN plain_ords po ON i.ukey IS NULL AND po.ord = i.ord
LEFT JOIN plain_ids p ON p.rn = po.rn
ORDER BY i.ord;

-- -------------------------------------------------------------------------------------- working

-- name: fetch
-- Claim up to $2 available jobs of queue $1 for node $3, in (priority, scheduled_at, id) order.
-- Jobs rescued $4 times or more run alone: only when $5 (idle) and at the head of the line.
-- $6 now.
WITH head AS MATERIALIZED (
    SELECT id, rescues FROM /*schema*/./*prefix*/jobs
    WHERE state = 'available' AND queue = $1::text AND $5::boolean AND $2::integer > 0
    ORDER BY priority, scheduled_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
),
rest AS MATERIALIZED (
    SELECT id FROM /*schema*/./*prefix*/jobs
    WHERE state = 'available' AND queue = $1::text AND rescues < $4::integer
        AND NOT EXISTS (SELECT 1 FROM head WHERE head.rescues >= $4::integer)
    ORDER BY priority, scheduled_at, id
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
)
UPDATE /*schema*/./*prefix*/jobs j SET
    state = 'running',
    attempt = j.attempt + 1,
    attempted_at = coalesce($6::timestamptz, now()),
    attempted_by = $3::text
-- By primary key from an array, never a join: a generic plan cannot know LIMIT $2 and might
-- otherwise hash-join against the whole table.
WHERE j.id = ANY (ARRAY(
    SELECT id FROM head WHERE rescues >= $4::integer
    UNION ALL
    SELECT id FROM rest
))
RETURNING j.id, j.handler, j.event, j.queue, j.priority, j.attempt, j.max_attempts,
    j.payload, j.meta::text, j.inserted_at, j.scheduled_at, j.timeout, j.rescues;

-- name: complete_many
-- Apply completions by primary key, fenced on (state = running, attempt).
-- $1 now, $2 ids, $3 attempts, $4 kinds, $5 errors (JSON objects or NULL), $6 delays,
-- $7 channel, $8 'running'. Returns the ids applied.
WITH upd AS (
    UPDATE /*schema*/./*prefix*/jobs j SET
        state = CASE c.kind
            WHEN 'completed' THEN 'completed'
            WHEN 'cancel' THEN 'cancelled'
            WHEN 'discard' THEN 'discarded'
            ELSE CASE
                WHEN c.delay <= 0 THEN 'available'
                WHEN c.kind = 'retry' THEN 'retryable'
                ELSE 'scheduled'
            END
        END,
        attempt = CASE WHEN c.kind IN ('snooze', 'return') THEN j.attempt - 1 ELSE j.attempt END,
        scheduled_at = CASE
            WHEN c.kind IN ('retry', 'snooze', 'return')
                THEN coalesce($1::timestamptz, now()) + make_interval(secs => c.delay)
            ELSE j.scheduled_at
        END,
        finalized_at = CASE
            WHEN c.kind IN ('completed', 'cancel', 'discard') THEN coalesce($1::timestamptz, now())
        END,
        errors = CASE
            WHEN c.error IS NULL OR c.kind = 'completed' THEN j.errors
            ELSE j.errors || jsonb_build_array(c.error::jsonb)
        END
    FROM unnest($2::bigint[], $3::integer[], $4::text[], $5::text[], $6::float8[])
        AS c(id, attempt, kind, error, delay)
    -- $8 is 'running': a parameter, not a literal, so that no plan can pick the partial index
    -- of running jobs (full of dead entries between vacuums) over the primary key.
    WHERE j.id = ANY ($2::bigint[]) AND j.id = c.id
        AND j.state = $8::text AND j.attempt = c.attempt
    RETURNING j.id, j.state, j.queue
),
notified AS (
    SELECT pg_notify($7::text, q.queue)
    FROM (SELECT DISTINCT queue FROM upd WHERE state = 'available') q
)
SELECT array_agg(id) AS ids, (SELECT count(*) FROM notified) AS notified FROM upd;

-- name: complete_and_fetch
-- complete_many and fetch in one statement (one round trip, one commit per cycle of a node).
-- $1 queue, $2 limit, $3 node, $4 isolate_after, $5 idle, $6 now; $7 ids, $8 attempts, $9 kinds,
-- $10 errors, $11 delays, $12 channel, $13 'running'. The completions touch only running rows
-- and the claim only available rows, so no row is modified twice; both see one snapshot.
WITH upd AS (
    UPDATE /*schema*/./*prefix*/jobs j SET
        state = CASE c.kind
            WHEN 'completed' THEN 'completed'
            WHEN 'cancel' THEN 'cancelled'
            WHEN 'discard' THEN 'discarded'
            ELSE CASE
                WHEN c.delay <= 0 THEN 'available'
                WHEN c.kind = 'retry' THEN 'retryable'
                ELSE 'scheduled'
            END
        END,
        attempt = CASE WHEN c.kind IN ('snooze', 'return') THEN j.attempt - 1 ELSE j.attempt END,
        scheduled_at = CASE
            WHEN c.kind IN ('retry', 'snooze', 'return')
                THEN coalesce($6::timestamptz, now()) + make_interval(secs => c.delay)
            ELSE j.scheduled_at
        END,
        finalized_at = CASE
            WHEN c.kind IN ('completed', 'cancel', 'discard') THEN coalesce($6::timestamptz, now())
        END,
        errors = CASE
            WHEN c.error IS NULL OR c.kind = 'completed' THEN j.errors
            ELSE j.errors || jsonb_build_array(c.error::jsonb)
        END
    FROM unnest($7::bigint[], $8::integer[], $9::text[], $10::text[], $11::float8[])
        AS c(id, attempt, kind, error, delay)
    WHERE j.id = ANY ($7::bigint[]) AND j.id = c.id
        AND j.state = $13::text AND j.attempt = c.attempt
    RETURNING j.id, j.state, j.queue
),
notified AS (
    SELECT count(pg_notify($12::text, q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM upd WHERE state = 'available') q
),
head AS MATERIALIZED (
    SELECT id, rescues FROM /*schema*/./*prefix*/jobs
    WHERE state = 'available' AND queue = $1::text AND $5::boolean AND $2::integer > 0
    ORDER BY priority, scheduled_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
),
rest AS MATERIALIZED (
    SELECT id FROM /*schema*/./*prefix*/jobs
    WHERE state = 'available' AND queue = $1::text AND rescues < $4::integer
        AND NOT EXISTS (SELECT 1 FROM head WHERE head.rescues >= $4::integer)
    ORDER BY priority, scheduled_at, id
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
)
UPDATE /*schema*/./*prefix*/jobs j SET
    state = 'running',
    attempt = j.attempt + 1,
    attempted_at = coalesce($6::timestamptz, now()),
    attempted_by = $3::text
FROM notified
WHERE j.id = ANY (ARRAY(
    SELECT id FROM head WHERE rescues >= $4::integer
    UNION ALL
    SELECT id FROM rest
)) AND notified.n >= 0
RETURNING j.id, j.handler, j.event, j.queue, j.priority, j.attempt, j.max_attempts,
    j.payload, j.meta::text, j.inserted_at, j.scheduled_at, j.timeout, j.rescues;

-- name: release_orphans
-- Jobs node $1 claimed in a fetch whose answer never reached it (the connection dropped after
-- the claim committed): running there, yet never handed to the node, so nothing would ever run
-- or finish them while the node stays alive. Back to available with the attempt refunded (they
-- never ran), keeping their place in line. $2 the ids the node was handed and has not finished,
-- $3 channel.
WITH orphans AS MATERIALIZED (
    SELECT id FROM /*schema*/./*prefix*/jobs
    WHERE state = 'running' AND attempted_by = $1::text AND NOT (id = ANY ($2::bigint[]))
    FOR UPDATE SKIP LOCKED
),
upd AS (
    UPDATE /*schema*/./*prefix*/jobs j SET state = 'available', attempt = j.attempt - 1
    WHERE j.id = ANY (ARRAY(SELECT id FROM orphans)) AND j.state = 'running'
    RETURNING j.id, j.queue
)
SELECT count(*) AS released, (
    SELECT count(pg_notify($3::text, q.queue)) FROM (SELECT DISTINCT queue FROM upd) q
) AS notified
FROM upd;

-- ------------------------------------------------------------------------ nodes and maintenance

-- name: heartbeat
-- $1 now, $2 node, $3 ttl seconds, $4 running ids, $5 their attempts, $6 'running' (a
-- parameter: look the jobs up by primary key, never through the partial index of running
-- jobs). Returns the lost ids.
WITH up AS (
    INSERT INTO /*schema*/./*prefix*/nodes (node, expires_at)
    VALUES ($2::text, coalesce($1::timestamptz, now()) + make_interval(secs => $3::float8))
    ON CONFLICT (node) DO UPDATE SET expires_at = EXCLUDED.expires_at
)
SELECT r.id
FROM unnest($4::bigint[], $5::integer[]) AS r(id, attempt)
WHERE NOT EXISTS (
    SELECT 1 FROM /*schema*/./*prefix*/jobs j
    WHERE j.id = r.id AND j.state = $6::text AND j.attempt = r.attempt
        AND j.attempted_by = $2::text
);

-- name: release_node
WITH gone AS (
    DELETE FROM /*schema*/./*prefix*/nodes WHERE node = $1::text
)
DELETE FROM /*schema*/./*prefix*/leader WHERE node = $1::text;

-- name: elect
-- $1 now, $2 node, $3 ttl seconds. Returns a row when $2 leads.
INSERT INTO /*schema*/./*prefix*/leader AS l (id, node, expires_at)
VALUES (true, $2::text, coalesce($1::timestamptz, now()) + make_interval(secs => $3::float8))
ON CONFLICT (id) DO UPDATE SET node = EXCLUDED.node, expires_at = EXCLUDED.expires_at
    WHERE l.node = EXCLUDED.node OR l.expires_at <= coalesce($1::timestamptz, now())
RETURNING node;

-- name: resign
DELETE FROM /*schema*/./*prefix*/leader WHERE node = $1::text;

-- name: stage
-- Make up to $2 due scheduled/retryable jobs available, in due order. A job that does not hold
-- its unique key now (retryable outside its unique states) and finds it held, by another job or
-- by an earlier job of this batch, is discarded instead, naming the holder. A holder committed
-- after this statement's snapshot makes it fail with a unique violation: the caller runs it
-- again. $1 now, $2 limit, $3 channel. Returns the queues that received available jobs.
WITH due AS MATERIALIZED (
    SELECT id, queue, unique_key, scheduled_at,
        unique_key IS NOT NULL
            AND NOT /*schema*/./*prefix*/holds_key(unique_states, state) AS contested
    FROM /*schema*/./*prefix*/jobs
    WHERE state IN ('scheduled', 'retryable')
        AND scheduled_at <= coalesce($1::timestamptz, now())
    ORDER BY scheduled_at, id
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
),
blocked AS (
    SELECT d.id, coalesce(
        (
            SELECT h.id FROM /*schema*/./*prefix*/jobs h
            WHERE h.unique_key = d.unique_key
                AND /*schema*/./*prefix*/holds_key(h.unique_states, h.state)
                AND h.id <> d.id
            LIMIT 1
        ),
        (
            SELECT e.id FROM due e
            WHERE e.contested AND e.unique_key = d.unique_key
                AND (e.scheduled_at, e.id) < (d.scheduled_at, d.id)
            ORDER BY e.scheduled_at, e.id
            LIMIT 1
        )
    ) AS holder
    FROM due d
    WHERE d.contested
),
upd AS (
    UPDATE /*schema*/./*prefix*/jobs j SET
        state = CASE WHEN b.holder IS NULL THEN 'available' ELSE 'discarded' END,
        -- Discarded while another job holds the key: never a second holder, even when its
        -- unique states list discarded (the bit is dropped from its mask).
        unique_states = CASE WHEN b.holder IS NULL THEN j.unique_states
            ELSE j.unique_states & ~64 END,
        finalized_at = CASE WHEN b.holder IS NOT NULL THEN coalesce($1::timestamptz, now()) END,
        errors = CASE WHEN b.holder IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(
            jsonb_build_object(
                'at', coalesce($1::timestamptz, now()),
                'attempt', j.attempt,
                'kind', 'unique_conflict',
                'message', format('job %s holds this job''s unique key', b.holder),
                'traceback', NULL
            )
        ) END
    FROM due d
    LEFT JOIN blocked b ON b.id = d.id
    WHERE j.id = ANY (ARRAY(SELECT id FROM due)) AND j.id = d.id
    RETURNING j.state, j.queue
)
SELECT q.queue, pg_notify($3::text, q.queue) IS NULL
FROM (SELECT DISTINCT queue FROM upd WHERE state = 'available') q
ORDER BY q.queue;

-- name: rescue
-- Return running jobs of expired nodes, and jobs running past timeout + grace, to retryable
-- (due now) with a `rescued` error; discarded when attempts are exhausted, or as `worker_lost`
-- once rescued $3 times. Fenced on state = running. $1 now, $2 grace, $3 max_rescues, $4 limit.
WITH stuck AS MATERIALIZED (
    SELECT j.id,
        CASE WHEN n.expires_at IS NULL OR n.expires_at <= coalesce($1::timestamptz, now())
            THEN format('node %s stopped while running attempt %s', j.attempted_by, j.attempt)
            ELSE format('attempt %s ran past its timeout plus grace', j.attempt)
        END AS reason
    FROM /*schema*/./*prefix*/jobs j
    LEFT JOIN /*schema*/./*prefix*/nodes n ON n.node = j.attempted_by
    WHERE j.state = 'running'
        AND (
            n.expires_at IS NULL
            OR n.expires_at <= coalesce($1::timestamptz, now())
            OR (
                j.timeout IS NOT NULL
                AND j.attempted_at + make_interval(secs => j.timeout + $2::float8)
                    < coalesce($1::timestamptz, now())
            )
        )
    LIMIT $4::integer
    FOR UPDATE OF j SKIP LOCKED
),
upd AS (
    UPDATE /*schema*/./*prefix*/jobs j SET
        rescues = j.rescues + 1,
        state = CASE
            WHEN j.rescues + 1 >= $3::integer OR j.attempt >= j.max_attempts THEN 'discarded'
            ELSE 'retryable'
        END,
        scheduled_at = CASE
            WHEN j.rescues + 1 >= $3::integer OR j.attempt >= j.max_attempts THEN j.scheduled_at
            ELSE coalesce($1::timestamptz, now())
        END,
        finalized_at = CASE
            WHEN j.rescues + 1 >= $3::integer OR j.attempt >= j.max_attempts
                THEN coalesce($1::timestamptz, now())
        END,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'at', coalesce($1::timestamptz, now()),
            'attempt', j.attempt,
            'kind', CASE WHEN j.rescues + 1 >= $3::integer THEN 'worker_lost' ELSE 'rescued' END,
            'message', CASE
                WHEN j.rescues + 1 >= $3::integer
                    THEN format('%s; rescued %s times', s.reason, j.rescues + 1)
                WHEN j.attempt >= j.max_attempts
                    THEN format('%s; attempts exhausted', s.reason)
                ELSE s.reason
            END,
            'traceback', NULL
        ))
    FROM stuck s
    WHERE j.id = ANY (ARRAY(SELECT id FROM stuck)) AND j.id = s.id AND j.state = 'running'
    RETURNING j.id
)
SELECT count(*) FROM upd;

-- name: prune
-- Delete finished jobs older than their state's retention, at most $4 in all.
-- $1 now, $2 states, $3 retentions (seconds), $4 limit.
WITH doomed AS MATERIALIZED (
    SELECT d.id
    FROM unnest($2::text[], $3::float8[]) AS r(state, keep)
    CROSS JOIN LATERAL (
        SELECT j.id FROM /*schema*/./*prefix*/jobs j
        WHERE j.state = r.state
            -- repeated so that the planner may use the partial index of finished jobs
            AND j.state IN ('completed', 'cancelled', 'discarded')
            AND j.finalized_at <= coalesce($1::timestamptz, now()) - make_interval(secs => r.keep)
        ORDER BY j.finalized_at
        LIMIT $4::integer
        FOR UPDATE SKIP LOCKED
    ) d
    LIMIT $4::integer
),
gone AS (
    DELETE FROM /*schema*/./*prefix*/jobs
    WHERE id = ANY (ARRAY(SELECT id FROM doomed))
    RETURNING 1
)
SELECT count(*) FROM gone;

-- ----------------------------------------------------------------------------------------- admin

-- name: get
SELECT id, handler, event, queue, priority, state, attempt, max_attempts, payload,
    meta::text, errors::text, inserted_at, scheduled_at, attempted_at, attempted_by, finalized_at
FROM /*schema*/./*prefix*/jobs
WHERE id = $1::bigint;

-- name: list
SELECT id, handler, event, queue, priority, state, attempt, max_attempts, payload,
    meta::text, errors::text, inserted_at, scheduled_at, attempted_at, attempted_by, finalized_at
FROM /*schema*/./*prefix*/jobs
WHERE ($1::text IS NULL OR state = $1::text)
    AND ($2::text IS NULL OR queue = $2::text)
    AND ($3::text IS NULL OR handler = $3::text)
ORDER BY id
LIMIT $4::integer;

-- name: lock_job
-- Lock one job for the admin retry. contested: it has a unique key it does not hold now, so
-- making it available may meet another holder.
SELECT state, unique_key IS NOT NULL AND NOT /*schema*/./*prefix*/holds_key(unique_states, state)
    AS contested
FROM /*schema*/./*prefix*/jobs
WHERE id = $1::bigint
FOR UPDATE;

-- name: key_holder
-- The job holding job $1's unique key, other than job $1.
SELECT h.id
FROM /*schema*/./*prefix*/jobs j
JOIN /*schema*/./*prefix*/jobs h
    ON h.unique_key = j.unique_key
    AND /*schema*/./*prefix*/holds_key(h.unique_states, h.state)
    AND h.id <> j.id
WHERE j.id = $1::bigint
LIMIT 1;

-- name: retry
-- $1 now, $2 id, $3 channel.
WITH upd AS (
    UPDATE /*schema*/./*prefix*/jobs SET
        state = 'available',
        scheduled_at = coalesce($1::timestamptz, now()),
        finalized_at = NULL,
        max_attempts = greatest(max_attempts, attempt + 1)
    WHERE id = $2::bigint
    RETURNING id, queue
)
SELECT id, pg_notify($3::text, queue) IS NULL FROM upd;

-- name: cancel
-- $1 now, $2 id. A job that does not hold its unique key now (retryable outside its unique
-- states) and finds it held never becomes a second holder by being cancelled: the cancelled bit
-- is dropped from its mask. A holder committed after this statement's snapshot makes it fail
-- with a unique violation: the caller runs it again.
UPDATE /*schema*/./*prefix*/jobs j SET
    state = 'cancelled',
    finalized_at = coalesce($1::timestamptz, now()),
    unique_states = CASE
        WHEN j.unique_key IS NOT NULL
            AND NOT /*schema*/./*prefix*/holds_key(j.unique_states, j.state)
            AND EXISTS (
                SELECT 1 FROM /*schema*/./*prefix*/jobs h
                WHERE h.unique_key = j.unique_key
                    AND /*schema*/./*prefix*/holds_key(h.unique_states, h.state)
                    AND h.id <> j.id
            )
        THEN j.unique_states & ~32
        ELSE j.unique_states
    END,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'at', coalesce($1::timestamptz, now()),
        'attempt', j.attempt,
        'kind', 'cancelled',
        'message', 'cancelled through the admin API',
        'traceback', NULL
    ))
WHERE j.id = $2::bigint AND j.state IN ('scheduled', 'available', 'running', 'retryable')
RETURNING j.id;

-- name: ping
SELECT 1;

-- name: stats
SELECT queue, state, count(*) FROM /*schema*/./*prefix*/jobs GROUP BY queue, state;
