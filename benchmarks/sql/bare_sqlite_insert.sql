-- The bare SQLite baseline of group B: the row SQLiteStore inserts for a job without a unique
-- key, written with plain sqlite3 executemany (no RETURNING, no store in between).
INSERT INTO relaybus_jobs (
    handler, event, queue, priority, state, max_attempts, payload, meta,
    inserted_at, scheduled_at, timeout
) VALUES (?, ?, ?, ?, 'available', ?, ?, '{}', ?, ?, NULL)
