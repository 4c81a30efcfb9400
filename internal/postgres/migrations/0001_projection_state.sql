-- Infrastructure of the read side. Projection tables themselves are not
-- migrated: each projection creates its tables per generation, and a new
-- projection schema is a rebuild into a new generation.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE projection_state (
    name                  text PRIMARY KEY,
    generation            integer     NOT NULL,
    schema_version        integer     NOT NULL,
    checkpoint            bigint      NOT NULL DEFAULT 0,
    status                text        NOT NULL DEFAULT 'running',
    error                 text,
    poison_seq            bigint,
    last_event_at         timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    rebuild_requested_at  timestamptz,
    rebuild_requested_by  text,
    rebuilding_generation integer,
    rebuild_checkpoint    bigint,
    rebuild_started_at    timestamptz,
    skip_seq              bigint,
    skip_reason           text,
    skip_actor            text
);

CREATE TABLE projection_skips (
    id          bigserial PRIMARY KEY,
    projection  text        NOT NULL,
    seq         bigint      NOT NULL,
    reason      text        NOT NULL,
    actor       text        NOT NULL,
    error       text,
    skipped_at  timestamptz NOT NULL DEFAULT now()
);
