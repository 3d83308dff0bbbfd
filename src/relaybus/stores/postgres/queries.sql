-- Named queries of the PostgreSQL dialect. Values are always bound :name parameters (compiled to
-- $n for asyncpg); the only text substituted is the validated schema and table prefix, at their
-- markers. Wherever a query takes :now, NULL means the database clock:
-- coalesce(:now::timestamptz, now()). The queries apply the values the core decided
-- (relaybus._jobrules): states, refunds, delays and error records arrive as binds; SQL only
-- evaluates due-ness against the database clock and lets the unique index arbitrate.

-- ---------------------------------------------------------------------------------- migrations

-- name: migrate_lock
SELECT pg_advisory_xact_lock(hashtextextended(:key::text, 0));

-- name: schema_exists
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :schema::text);

-- name: create_schema
-- Also the first statement of `relaybus sql` for a schema other than public.
CREATE SCHEMA IF NOT EXISTS /*schema*/;

-- name: create_migrations_table
-- The same table migration 0001 creates (it runs first on a new schema, under the lock).
CREATE TABLE IF NOT EXISTS /*schema*/./*prefix*/migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM /*schema*/./*prefix*/migrations ORDER BY version;

-- name: record_migration
INSERT INTO /*schema*/./*prefix*/migrations (version, name, applied_at)
VALUES (:version::integer, :name::text, coalesce(:now::timestamptz, now()))
ON CONFLICT (version) DO NOTHING;

-- ------------------------------------------------------------------------------ inserting (own)

-- name: insert_one
-- One job without a unique key: one autocommit statement, NOTIFY included.
-- Binds: now, handler, event, queue, priority, max_attempts, payload, meta, timeout, delay,
-- at, channel.
INSERT INTO /*schema*/./*prefix*/jobs (
    handler, event, queue, priority, state, max_attempts, payload, meta,
    inserted_at, scheduled_at, timeout
)
SELECT :handler::text, :event::text, :queue::text, :priority::smallint,
    CASE WHEN t.sched > t.now THEN 'scheduled' ELSE 'available' END,
    :max_attempts::integer, :payload::text, :meta::text::jsonb, t.now, t.sched, :timeout::float8
FROM (
    SELECT n.now, coalesce(:at::timestamptz, n.now + make_interval(secs => :delay::float8), n.now)
        AS sched
    FROM (SELECT coalesce(:now::timestamptz, now()) AS now) n
) t
RETURNING id, CASE WHEN state = 'available' THEN pg_notify(:channel::text, queue) END IS NULL;

-- name: insert_plain
-- Jobs without unique keys: one INSERT ... SELECT FROM unnest; ids in input order.
-- Binds: now, payloads; then each other column twice: as an array (one value per job: handlers,
-- events, queues, priorities, max_attempts_list, metas, timeouts, delays, ats) or, when every
-- job has the same value, NULL and that value alone (handler, event, ...): the client then
-- neither builds nor encodes an array, and unnest pads the missing column with NULLs; channel.
WITH n AS (
    SELECT coalesce(:now::timestamptz, now()) AS now
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
            coalesce(u.handler, :handler::text) AS handler,
            coalesce(u.event, :event::text) AS event,
            coalesce(u.queue, :queue::text) AS queue,
            coalesce(u.priority, :priority::smallint) AS priority,
            coalesce(u.max_attempts, :max_attempts::integer) AS max_attempts,
            coalesce(u.meta, :meta::text) AS meta,
            coalesce(u.timeout, :timeout::float8) AS timeout,
            coalesce(
                coalesce(u.at, :at::timestamptz),
                n.now + make_interval(secs => coalesce(u.delay, :delay::float8)),
                n.now
            ) AS sched
        FROM n, unnest(
            :payloads::text[], :handlers::text[], :events::text[], :queues::text[], :priorities::smallint[], :max_attempts_list::integer[],
            :metas::text[], :timeouts::float8[], :delays::float8[], :ats::timestamptz[]
        ) WITH ORDINALITY AS u(
            payload, handler, event, queue, priority, max_attempts, meta, timeout, delay, at, ord
        )
        ORDER BY u.ord
    ) i
    RETURNING id, state, queue
),
notified AS (
    SELECT pg_notify(:channel::text, q.queue)
    FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') q
)
SELECT array_agg(id ORDER BY id) AS ids, (SELECT count(*) FROM notified) AS notified
FROM ins;

-- name: insert_unique_one
-- One unique job: insert_unique for a single entry, in a lighter statement (no ordinality,
-- window or mapping joins). Same binds as insert_one, plus base_key, period (NULL: the key is
-- final), unique_states and the replace masks rep_available, rep_scheduled, rep_retryable
-- (decided by relaybus._jobrules). Returns (id, outcome); no row when the key was taken
-- concurrently: run again.
WITH t AS MATERIALIZED (
    SELECT n.now,
        coalesce(:at::timestamptz, n.now + make_interval(secs => :delay::float8), n.now) AS sched,
        CASE WHEN :period::float8 IS NULL THEN :base_key::bytea
            ELSE sha256(:base_key::bytea || convert_to(
                ':' || floor(extract(epoch FROM n.now) / :period::float8::numeric)::bigint::text,
                'UTF8'
            ))
        END AS ukey
    FROM (SELECT coalesce(:now::timestamptz, now()) AS now) n
),
old AS MATERIALIZED (
    SELECT j.id, j.state,
        CASE j.state
            WHEN 'available' THEN :rep_available::integer
            WHEN 'scheduled' THEN :rep_scheduled::integer
            WHEN 'retryable' THEN :rep_retryable::integer
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
        payload = CASE WHEN o.rep & 1 <> 0 THEN :payload::text ELSE j.payload END,
        meta = CASE WHEN o.rep & 2 <> 0 THEN :meta::text::jsonb ELSE j.meta END,
        priority = CASE WHEN o.rep & 4 <> 0 THEN :priority::smallint ELSE j.priority END,
        queue = CASE WHEN o.rep & 8 <> 0 THEN :queue::text ELSE j.queue END,
        max_attempts = CASE WHEN o.rep & 32 <> 0 THEN :max_attempts::integer ELSE j.max_attempts END,
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
    SELECT :handler::text, :event::text, :queue::text, :priority::smallint,
        CASE WHEN t.sched > t.now THEN 'scheduled' ELSE 'available' END,
        :max_attempts::integer, :payload::text, :meta::text::jsonb, t.now, t.sched, :timeout::float8,
        t.ukey, :unique_states::integer
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
    SELECT count(pg_notify(:channel::text, q.queue))
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
-- Binds: arrays of one value per entry (handlers, events, queues, priorities, max_attempts,
-- payloads, metas, timeouts, delays, ats, base_keys, periods (NULL: the key is final),
-- unique_states, rep_available, rep_scheduled, rep_retryable); now; channel.
-- Returns (ord, id, outcome) per entry; id is NULL for an entry to run again.
WITH n AS (
    SELECT coalesce(:now::timestamptz, now()) AS now
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
            :handlers::text[], :events::text[], :queues::text[], :priorities::smallint[], :max_attempts::integer[], :payloads::text[],
            :metas::text[], :timeouts::float8[], :delays::float8[], :ats::timestamptz[], :base_keys::bytea[],
            :periods::float8[], :unique_states::integer[], :rep_available::integer[], :rep_scheduled::integer[], :rep_retryable::integer[]
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
    SELECT pg_notify(:channel::text, q.queue)
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

-- -------------------------------------------------------------------------------- working (own)

-- fragment: claim_ctes
-- The CTEs of fetch and end_runs_and_fetch that pick the jobs to claim: paused (the queue, when
-- it is paused: then nothing is claimed), head (an idle node's next job, which runs alone if it
-- is a suspect) and rest (the others, suspects excluded).
paused AS MATERIALIZED (
    SELECT 1 FROM /*schema*/./*prefix*/queue_pauses WHERE queue = :queue::text
),
head AS MATERIALIZED (
    SELECT id, rescues FROM /*schema*/./*prefix*/jobs
    WHERE state = 'available' AND queue = :queue::text AND :idle::boolean AND :limit::integer > 0
        AND NOT EXISTS (SELECT 1 FROM paused)
    ORDER BY priority, scheduled_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
),
rest AS MATERIALIZED (
    SELECT id FROM /*schema*/./*prefix*/jobs
    WHERE state = 'available' AND queue = :queue::text AND rescues < :isolate_after::integer
        AND NOT EXISTS (SELECT 1 FROM head WHERE head.rescues >= :isolate_after::integer)
        AND NOT EXISTS (SELECT 1 FROM paused)
    ORDER BY priority, scheduled_at, id
    LIMIT :limit::integer
    FOR UPDATE SKIP LOCKED
)

-- name: fetch
-- Claim up to :limit available jobs of :queue for :node, in (priority, scheduled_at, id) order.
-- Jobs rescued :isolate_after times or more run alone: only when :idle and at the head of the
-- line.
WITH /*fragment:claim_ctes*/

UPDATE /*schema*/./*prefix*/jobs j SET
    state = 'running',
    attempt = j.attempt + 1,
    attempted_at = coalesce(:now::timestamptz, now()),
    attempted_by = :node::text
-- By primary key from an array, never a join: a generic plan cannot know LIMIT :limit and might
-- otherwise hash-join against the whole table.
WHERE j.id = ANY (ARRAY(
    SELECT id FROM head WHERE rescues >= :isolate_after::integer
    UNION ALL
    SELECT id FROM rest
))
RETURNING j.id, j.handler, j.event, j.queue, j.priority, j.attempt, j.max_attempts,
    j.payload, j.meta::text, j.inserted_at, j.scheduled_at, j.timeout, j.rescues;

-- fragment: end_runs_update
-- The UPDATE of end_runs and end_runs_and_fetch (a CTE of both). Binds: ids and attempts (one
-- element per run), then each decided column twice: as an array (states, refunds,
-- rescued_list, delays, finalize_list, errors) or, when every run has the same value, NULL
-- and that value alone (state, refund, rescued, delay, finalize, error): a batch of
-- completions sends two arrays, not eight (asyncpg encodes arrays element by element).
    UPDATE /*schema*/./*prefix*/jobs j SET
        state = coalesce(c.state, :state::text),
        attempt = j.attempt - coalesce(c.refund, :refund::integer),
        rescues = j.rescues + coalesce(c.rescued, :rescued::integer),
        scheduled_at = CASE WHEN coalesce(c.delay, :delay::float8) IS NULL THEN j.scheduled_at
            ELSE coalesce(:now::timestamptz, now())
                + make_interval(secs => coalesce(c.delay, :delay::float8)) END,
        finalized_at = CASE WHEN coalesce(c.finalize, :finalize::boolean)
            THEN coalesce(:now::timestamptz, now()) END,
        errors = CASE WHEN coalesce(c.error, :error::text) IS NULL THEN j.errors
            ELSE j.errors || jsonb_build_array(coalesce(c.error, :error::text)::jsonb) END
    FROM unnest(
        :ids::bigint[], :attempts::integer[], :states::text[], :refunds::integer[],
        :rescued_list::integer[], :delays::float8[], :finalize_list::boolean[], :errors::text[]
    ) AS c(id, attempt, state, refund, rescued, delay, finalize, error)
    -- :running is 'running': a bind, not a literal, so that no plan can pick the partial index
    -- of running jobs (full of dead entries between vacuums) over the primary key.
    WHERE j.id = ANY (:ids::bigint[]) AND j.id = c.id
        AND j.state = :running::text AND j.attempt = c.attempt
    RETURNING j.id, j.state, j.queue

-- name: end_runs
-- Apply decided run ends by primary key, fenced on (state = running, attempt). Binds: now;
-- the runs (see end_runs_update; a delay of NULL keeps scheduled_at, errors are JSON objects
-- or NULL); channel; running. Returns the ids applied.
WITH upd AS (
/*fragment:end_runs_update*/
),
notified AS (
    SELECT pg_notify(:channel::text, q.queue)
    FROM (SELECT DISTINCT queue FROM upd WHERE state = 'available') q
)
SELECT array_agg(id) AS ids, (SELECT count(*) FROM notified) AS notified FROM upd;

-- name: end_runs_and_fetch
-- end_runs and fetch in one statement (one round trip, one commit per cycle of a node). The
-- ends touch only running rows and the claim only available rows, so no row is modified twice;
-- both see one snapshot.
WITH upd AS (
/*fragment:end_runs_update*/
),
notified AS (
    SELECT count(pg_notify(:channel::text, q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM upd WHERE state = 'available') q
),
/*fragment:claim_ctes*/

UPDATE /*schema*/./*prefix*/jobs j SET
    state = 'running',
    attempt = j.attempt + 1,
    attempted_at = coalesce(:now::timestamptz, now()),
    attempted_by = :node::text
FROM notified
WHERE j.id = ANY (ARRAY(
    SELECT id FROM head WHERE rescues >= :isolate_after::integer
    UNION ALL
    SELECT id FROM rest
)) AND notified.n >= 0
RETURNING j.id, j.handler, j.event, j.queue, j.priority, j.attempt, j.max_attempts,
    j.payload, j.meta::text, j.inserted_at, j.scheduled_at, j.timeout, j.rescues;

-- name: release_orphans
-- Jobs :node claimed in a fetch whose answer never reached it (the connection dropped after
-- the claim committed): running there, yet never handed to the node, so nothing would ever run
-- or finish them while the node stays alive. Back to available with the attempt refunded (they
-- never ran), keeping their place in line. :handed: the ids the node was handed and has not
-- finished.
WITH orphans AS MATERIALIZED (
    SELECT id FROM /*schema*/./*prefix*/jobs
    WHERE state = 'running' AND attempted_by = :node::text AND NOT (id = ANY (:handed::bigint[]))
    FOR UPDATE SKIP LOCKED
),
upd AS (
    UPDATE /*schema*/./*prefix*/jobs j SET state = 'available', attempt = j.attempt - 1
    WHERE j.id = ANY (ARRAY(SELECT id FROM orphans)) AND j.state = 'running'
    RETURNING j.id, j.queue
)
SELECT count(*) AS released, (
    SELECT count(pg_notify(:channel::text, q.queue)) FROM (SELECT DISTINCT queue FROM upd) q
) AS notified
FROM upd;

-- name: ping
SELECT 1;

-- name: transaction_settings
-- A job handler's own transaction (ctx.transaction()) plans with PostgreSQL's defaults, not the
-- settings the store's sessions use for its own statements (PostgresStore.server_settings).
SELECT set_config('enable_seqscan', 'on', true), set_config('enable_bitmapscan', 'on', true),
    set_config('plan_cache_mode', 'auto', true);

-- ------------------------------------------------------------------------ nodes and maintenance

-- name: heartbeat
INSERT INTO /*schema*/./*prefix*/nodes (node, expires_at)
VALUES (:node::text, coalesce(:now::timestamptz, now()) + make_interval(secs => :ttl::float8))
ON CONFLICT (node) DO UPDATE SET expires_at = EXCLUDED.expires_at;

-- name: lost_runs
-- Of the runs (:ids, :attempts), those no longer running on :node. :running is 'running' (a
-- bind: look the jobs up by primary key, never through the partial index of running jobs).
SELECT r.id
FROM unnest(:ids::bigint[], :attempts::integer[]) AS r(id, attempt)
WHERE NOT EXISTS (
    SELECT 1 FROM /*schema*/./*prefix*/jobs j
    WHERE j.id = r.id AND j.state = :running::text AND j.attempt = r.attempt
        AND j.attempted_by = :node::text
);

-- name: delete_node
DELETE FROM /*schema*/./*prefix*/nodes WHERE node = :node::text;

-- name: elect
-- Returns a row when :node leads.
INSERT INTO /*schema*/./*prefix*/leader AS l (id, node, expires_at)
VALUES (true, :node::text,
    coalesce(:now::timestamptz, now()) + make_interval(secs => :ttl::float8))
ON CONFLICT (id) DO UPDATE SET node = EXCLUDED.node, expires_at = EXCLUDED.expires_at
    WHERE l.node = EXCLUDED.node OR l.expires_at <= coalesce(:now::timestamptz, now())
RETURNING node;

-- name: resign
DELETE FROM /*schema*/./*prefix*/leader WHERE node = :node::text;

-- name: stage
-- Make up to :limit due scheduled/retryable jobs that hold their unique key (or have none)
-- available, in due order. Returns the queues that received available jobs.
WITH due AS MATERIALIZED (
    SELECT id FROM /*schema*/./*prefix*/jobs
    WHERE state IN ('scheduled', 'retryable')
        AND scheduled_at <= coalesce(:now::timestamptz, now())
        AND (unique_key IS NULL OR /*schema*/./*prefix*/holds_key(unique_states, state))
    ORDER BY scheduled_at, id
    LIMIT :limit::integer
    FOR UPDATE SKIP LOCKED
),
upd AS (
    UPDATE /*schema*/./*prefix*/jobs j SET state = 'available'
    WHERE j.id = ANY (ARRAY(SELECT id FROM due))
    RETURNING j.queue
)
SELECT q.queue, pg_notify(:channel::text, q.queue) IS NULL
FROM (SELECT DISTINCT queue FROM upd) q
ORDER BY q.queue;

-- name: due_contested
-- Due jobs with a unique key they do not hold while waiting (retryable outside their unique
-- states): (id, queue, attempt, unique_states, state, now), in due order.
SELECT id, queue, attempt, unique_states, state, coalesce(:now::timestamptz, now())
FROM /*schema*/./*prefix*/jobs
WHERE state IN ('scheduled', 'retryable')
    AND scheduled_at <= coalesce(:now::timestamptz, now())
    AND unique_key IS NOT NULL AND NOT /*schema*/./*prefix*/holds_key(unique_states, state)
ORDER BY scheduled_at, id
LIMIT :limit::integer;

-- name: key_holder
-- The job holding job :id's unique key, other than job :id.
SELECT h.id
FROM /*schema*/./*prefix*/jobs j
JOIN /*schema*/./*prefix*/jobs h
    ON h.unique_key = j.unique_key
    AND /*schema*/./*prefix*/holds_key(h.unique_states, h.state)
    AND h.id <> j.id
WHERE j.id = :id::bigint
LIMIT 1;

-- name: make_available
-- A unique violation here means a holder committed meanwhile: the caller runs again.
WITH upd AS (
    UPDATE /*schema*/./*prefix*/jobs SET state = 'available'
    WHERE id = :id::bigint AND state = :expect::text
    RETURNING queue
)
SELECT pg_notify(:channel::text, queue) FROM upd;

-- name: set_state
-- A decided state change of a job that is not running (stage conflicts, admin cancel), fenced
-- on the state it was read in.
UPDATE /*schema*/./*prefix*/jobs SET
    state = :state::text,
    finalized_at = CASE WHEN :finalize::boolean THEN coalesce(:now::timestamptz, now()) END,
    unique_states = :unique_states::integer,
    errors = CASE WHEN :error::text IS NULL THEN errors
        ELSE errors || jsonb_build_array(:error::text::jsonb) END
WHERE id = :id::bigint AND state = :expect::text;

-- name: rescue_candidates
-- Running jobs of expired nodes, and jobs running past timeout + grace, locked (a frozen node's
-- row locks block nobody): (id, attempt, max_attempts, rescues, node, node_lost, now, handler,
-- queue).
SELECT j.id, j.attempt, j.max_attempts, j.rescues, j.attempted_by,
    n.expires_at IS NULL OR n.expires_at <= coalesce(:now::timestamptz, now()) AS node_lost,
    coalesce(:now::timestamptz, now()), j.handler, j.queue
FROM /*schema*/./*prefix*/jobs j
LEFT JOIN /*schema*/./*prefix*/nodes n ON n.node = j.attempted_by
WHERE j.state = 'running'
    AND (
        n.expires_at IS NULL
        OR n.expires_at <= coalesce(:now::timestamptz, now())
        OR (
            j.timeout IS NOT NULL
            AND j.attempted_at + make_interval(secs => j.timeout + :grace::float8)
                < coalesce(:now::timestamptz, now())
        )
    )
ORDER BY j.id
LIMIT :limit::integer
FOR UPDATE OF j SKIP LOCKED;

-- name: prune
-- Delete finished jobs of :state older than :keep seconds, at most :limit.
WITH doomed AS MATERIALIZED (
    SELECT j.id FROM /*schema*/./*prefix*/jobs j
    WHERE j.state = :state::text
        -- repeated so that the planner may use the partial index of finished jobs
        AND j.state IN ('completed', 'cancelled', 'discarded')
        AND j.finalized_at
            <= coalesce(:now::timestamptz, now()) - make_interval(secs => :keep::float8)
    ORDER BY j.finalized_at
    LIMIT :limit::integer
    FOR UPDATE SKIP LOCKED
)
DELETE FROM /*schema*/./*prefix*/jobs
WHERE id = ANY (ARRAY(SELECT id FROM doomed));

-- ----------------------------------------------------------------------------------------- admin

-- name: get_job
SELECT id, handler, event, queue, priority, state, attempt, max_attempts, payload,
    meta::text, errors::text, inserted_at, scheduled_at, attempted_at, attempted_by, finalized_at
FROM /*schema*/./*prefix*/jobs
WHERE id = :id::bigint;

-- name: list_jobs
SELECT id, handler, event, queue, priority, state, attempt, max_attempts, payload,
    meta::text, errors::text, inserted_at, scheduled_at, attempted_at, attempted_by, finalized_at
FROM /*schema*/./*prefix*/jobs
WHERE (:state::text IS NULL OR state = :state::text)
    AND (:queue::text IS NULL OR queue = :queue::text)
    AND (:handler::text IS NULL OR handler = :handler::text)
    AND (:after_id::bigint IS NULL OR id > :after_id::bigint)
    AND (:before_id::bigint IS NULL OR id < :before_id::bigint)
    AND (:text::text IS NULL OR strpos(payload, :text::text) > 0
        OR strpos(meta::text, :text::text) > 0)
ORDER BY CASE WHEN :newest::boolean THEN id END DESC, id
LIMIT :limit::integer;

-- name: lock_job
-- Lock one job for an admin change: (state, attempt, max_attempts, has a unique key,
-- unique_states, now).
SELECT state, attempt, max_attempts, unique_key IS NOT NULL, unique_states,
    coalesce(:now::timestamptz, now())
FROM /*schema*/./*prefix*/jobs
WHERE id = :id::bigint
FOR UPDATE;

-- name: retry_job
WITH upd AS (
    UPDATE /*schema*/./*prefix*/jobs SET
        state = 'available',
        scheduled_at = coalesce(:now::timestamptz, now()),
        finalized_at = NULL,
        max_attempts = :max_attempts::integer
    WHERE id = :id::bigint
    RETURNING id, queue
)
SELECT id, pg_notify(:channel::text, queue) IS NULL FROM upd;

-- name: stats
SELECT queue, state, count(*) FROM /*schema*/./*prefix*/jobs GROUP BY queue, state;

-- name: count_jobs
-- How many jobs match list_jobs' filters, counting at most :limit (a capped count).
SELECT count(*) FROM (
    SELECT 1 FROM /*schema*/./*prefix*/jobs
    WHERE (:state::text IS NULL OR state = :state::text)
        AND (:queue::text IS NULL OR queue = :queue::text)
        AND (:handler::text IS NULL OR handler = :handler::text)
        AND (:after_id::bigint IS NULL OR id > :after_id::bigint)
        AND (:before_id::bigint IS NULL OR id < :before_id::bigint)
        AND (:text::text IS NULL OR strpos(payload, :text::text) > 0
            OR strpos(meta::text, :text::text) > 0)
    LIMIT :limit::integer
) AS matching;

-- name: capped_stats
-- Job counts by queue and state, reading at most :cap jobs of each state, each through the
-- partial index of its state (never a scan of the whole table).
SELECT queue, state, count(*) FROM (
    (SELECT queue, state FROM /*schema*/./*prefix*/jobs
        WHERE state = 'scheduled' AND state IN ('scheduled', 'retryable') LIMIT :cap::integer)
    UNION ALL (SELECT queue, state FROM /*schema*/./*prefix*/jobs
        WHERE state = 'available' LIMIT :cap::integer)
    UNION ALL (SELECT queue, state FROM /*schema*/./*prefix*/jobs
        WHERE state = 'running' LIMIT :cap::integer)
    UNION ALL (SELECT queue, state FROM /*schema*/./*prefix*/jobs
        WHERE state = 'retryable' AND state IN ('scheduled', 'retryable') LIMIT :cap::integer)
    UNION ALL (SELECT queue, state FROM /*schema*/./*prefix*/jobs
        WHERE state = 'completed' AND state IN ('completed', 'cancelled', 'discarded')
        LIMIT :cap::integer)
    UNION ALL (SELECT queue, state FROM /*schema*/./*prefix*/jobs
        WHERE state = 'cancelled' AND state IN ('completed', 'cancelled', 'discarded')
        LIMIT :cap::integer)
    UNION ALL (SELECT queue, state FROM /*schema*/./*prefix*/jobs
        WHERE state = 'discarded' AND state IN ('completed', 'cancelled', 'discarded')
        LIMIT :cap::integer)
) AS capped
GROUP BY queue, state;

-- name: finished_buckets
-- Jobs finished in the last :window seconds, as (bucket, state, count): the window cut in
-- :buckets equal parts, 0 the oldest; read through the partial index of finished jobs.
WITH t AS (
    SELECT coalesce(:now::timestamptz, now()) AS now,
        make_interval(secs => :window::float8) AS span
)
SELECT floor(extract(epoch FROM j.finalized_at - (t.now - t.span)) * :buckets::integer
        / :window::float8)::integer AS bucket,
    j.state, count(*)
FROM /*schema*/./*prefix*/jobs j, t
WHERE j.state IN ('completed', 'cancelled', 'discarded')
    AND j.finalized_at > t.now - t.span AND j.finalized_at <= t.now
GROUP BY bucket, j.state;

-- name: delete_job
-- The caller locked the job (lock_job) and checked that it is not running.
DELETE FROM /*schema*/./*prefix*/jobs WHERE id = :id::bigint AND state = :expect::text;

-- name: nodes
-- Live nodes: (node, expires_at, leads, running jobs).
SELECT n.node, n.expires_at,
    coalesce(l.expires_at > coalesce(:now::timestamptz, now()), false) AS leader,
    (SELECT count(*) FROM /*schema*/./*prefix*/jobs j
        WHERE j.state = 'running' AND j.attempted_by = n.node) AS running
FROM /*schema*/./*prefix*/nodes n
LEFT JOIN /*schema*/./*prefix*/leader l ON l.node = n.node
WHERE n.expires_at > coalesce(:now::timestamptz, now())
ORDER BY n.node;

-- name: pause_queue
INSERT INTO /*schema*/./*prefix*/queue_pauses (queue, paused_at)
VALUES (:queue::text, coalesce(:now::timestamptz, now()))
ON CONFLICT (queue) DO NOTHING;

-- name: resume_queue
-- Resumed: wake the nodes that serve it.
WITH gone AS (
    DELETE FROM /*schema*/./*prefix*/queue_pauses WHERE queue = :queue::text RETURNING queue
)
SELECT pg_notify(:channel::text, queue) FROM gone;

-- name: paused_queues
SELECT queue FROM /*schema*/./*prefix*/queue_pauses ORDER BY queue;

-- --------------------------------------------------------- transactions (SQLAlchemy executor)
-- A client library whose connections run in autocommit starts and ends the core's
-- transactions with these statements.

-- name: begin
BEGIN;

-- name: commit
COMMIT;

-- name: rollback
ROLLBACK;
