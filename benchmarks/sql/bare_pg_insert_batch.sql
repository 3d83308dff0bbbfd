-- The bare PostgreSQL batch baseline of group C: the rows PostgresStore inserts for a batch of
-- jobs without unique keys, as one prepared asyncpg statement over an array of payloads (no
-- NOTIFY, no scheduling expression, no per-column arrays: every job has the same handler).
INSERT INTO relaybus_jobs (
    handler, event, queue, priority, state, max_attempts, payload, meta,
    inserted_at, scheduled_at, timeout
)
SELECT $1, $2, $3, $4, 'available', $5, p, '{}'::jsonb, now(), now(), NULL
FROM unnest($6::text[]) p
RETURNING id
