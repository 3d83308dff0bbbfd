-- The bare latency baseline of group C, producer side: the row of bare_pg_insert.sql and a
-- NOTIFY carrying its id, in one statement (one transaction, as a dispatch).
WITH job AS (
    INSERT INTO relaybus_jobs (
        handler, event, queue, priority, state, max_attempts, payload, meta,
        inserted_at, scheduled_at, timeout
    ) VALUES ($1, $2, $3, $4, 'available', $5, $6, '{}'::jsonb, now(), now(), NULL)
    RETURNING id
)
SELECT pg_notify('bare_bench', id::text) FROM job
