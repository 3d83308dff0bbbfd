-- The bare PostgreSQL baseline of group C: the row PostgresStore inserts for one job without a
-- unique key, as one prepared asyncpg statement (no NOTIFY, no scheduling expression).
INSERT INTO relaybus_jobs (
    handler, event, queue, priority, state, max_attempts, payload, meta,
    inserted_at, scheduled_at, timeout
) VALUES ($1, $2, $3, $4, 'available', $5, $6, '{}'::jsonb, now(), now(), NULL)
RETURNING id
