-- The bare latency baseline of group C, listener side: claim the notified job by its id
-- (no queue scan, no ordering, no lease): the least a LISTEN/NOTIFY queue does per job.
UPDATE relaybus_jobs
SET state = 'running', attempt = attempt + 1, attempted_at = now()
WHERE id = $1 AND state = 'available'
RETURNING payload
