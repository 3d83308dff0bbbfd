-- relaybus PostgreSQL schema, version 2: paused queues (`bus.queues.pause`). A queue listed here
-- is fetched by no node of this release; nodes of 0.1.0 do not read it (pause once every node
-- runs this release).

CREATE TABLE IF NOT EXISTS /*schema*/./*prefix*/queue_pauses (
    queue text PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO /*schema*/./*prefix*/migrations (version, name) VALUES (2, 'queue_pauses')
    ON CONFLICT (version) DO NOTHING;
