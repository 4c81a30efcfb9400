-- Every webhook delivery attempt, written by the webhooker and read by
-- GET /v1/webhooks/{id}/attempts. Attempts are operational records, not
-- events: they are not in the log and not rebuilt by replay.
CREATE TABLE webhook_attempts (
    id           bigserial   PRIMARY KEY,
    webhook_id   uuid        NOT NULL,
    event_seq    bigint      NOT NULL,
    event_id     text        NOT NULL,
    event_type   text        NOT NULL,
    tenant_id    uuid        NOT NULL,
    attempt      integer     NOT NULL,
    replay       boolean     NOT NULL DEFAULT false,
    at           timestamptz NOT NULL,
    outcome      text        NOT NULL,
    status       integer,
    latency_ms   double precision NOT NULL,
    response     text,
    error        text
);

CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (webhook_id, id DESC);
CREATE INDEX webhook_attempts_by_event ON webhook_attempts (webhook_id, event_seq, id);
