-- relaybus schema for postgres: migrations 1-2

-- migration 0001_initial
-- relaybus PostgreSQL schema, version 1.
-- Rendered with a schema and a table prefix; every statement is safe to run once per schema.

CREATE TABLE IF NOT EXISTS public.relaybus_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- True when a job in `state` holds its unique key under the bitmask `unique_states`
-- (bits in JobState order: scheduled 1, available 2, running 4, retryable 8, completed 16,
-- cancelled 32, discarded 64). IMMUTABLE so that it can define the partial unique index.
CREATE FUNCTION public.relaybus_holds_key(unique_states integer, state text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (unique_states & CASE state
        WHEN 'scheduled' THEN 1
        WHEN 'available' THEN 2
        WHEN 'running' THEN 4
        WHEN 'retryable' THEN 8
        WHEN 'completed' THEN 16
        WHEN 'cancelled' THEN 32
        WHEN 'discarded' THEN 64
        ELSE 0 END) <> 0
$$;

CREATE TABLE public.relaybus_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state text NOT NULL DEFAULT 'available' CHECK (state IN (
        'scheduled', 'available', 'running', 'retryable', 'completed', 'cancelled', 'discarded'
    )),
    queue text NOT NULL,
    priority smallint NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 9),
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL CHECK (max_attempts >= 1),
    rescues integer NOT NULL DEFAULT 0,
    unique_states integer NOT NULL DEFAULT 0,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    attempted_at timestamptz,
    finalized_at timestamptz,
    timeout double precision,
    handler text NOT NULL,
    event text NOT NULL,
    attempted_by text,
    unique_key bytea,
    payload text NOT NULL,  -- the event as JSON text, byte for byte (jsonb would refuse \u0000)
    meta jsonb NOT NULL DEFAULT '{}',
    errors jsonb NOT NULL DEFAULT '[]'
);

-- The fetch: WHERE state = 'available' AND queue = $1 ORDER BY priority, scheduled_at, id.
-- Partial, so finished rows never sit on the hot index.
CREATE INDEX relaybus_jobs_fetch_idx ON public.relaybus_jobs
    (queue, priority, scheduled_at, id) WHERE state = 'available';

-- The stager: due scheduled/retryable jobs in due order.
CREATE INDEX relaybus_jobs_due_idx ON public.relaybus_jobs
    (scheduled_at, id) WHERE state IN ('scheduled', 'retryable');

-- The rescuer and heartbeats: running jobs only.
CREATE INDEX relaybus_jobs_running_idx ON public.relaybus_jobs
    (attempted_by) WHERE state = 'running';

-- The pruner: finished jobs by state and age.
CREATE INDEX relaybus_jobs_finished_idx ON public.relaybus_jobs
    (state, finalized_at) WHERE state IN ('completed', 'cancelled', 'discarded');

-- Unique jobs (River's design): one holder per key among the states of its bitmask.
CREATE UNIQUE INDEX relaybus_jobs_unique_idx ON public.relaybus_jobs (unique_key)
    WHERE unique_key IS NOT NULL
    AND public.relaybus_holds_key(unique_states, state);

-- Node heartbeats, stamped with the database clock.
CREATE TABLE public.relaybus_nodes (
    node text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- The leader lease: at most one row.
CREATE TABLE public.relaybus_leader (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    node text NOT NULL,
    expires_at timestamptz NOT NULL
);

INSERT INTO public.relaybus_migrations (version, name) VALUES (1, 'initial')
    ON CONFLICT (version) DO NOTHING;

-- migration 0002_queue_pauses
-- relaybus PostgreSQL schema, version 2: paused queues (`bus.queues.pause`). A queue listed here
-- is fetched by no node of this release; nodes of 0.1.0 do not read it (pause once every node
-- runs this release).

CREATE TABLE IF NOT EXISTS public.relaybus_queue_pauses (
    queue text PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO public.relaybus_migrations (version, name) VALUES (2, 'queue_pauses')
    ON CONFLICT (version) DO NOTHING;
