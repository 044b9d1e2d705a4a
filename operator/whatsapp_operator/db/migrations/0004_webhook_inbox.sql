-- Evolution's webhooks, stored before the receiver answers 2xx, and the queue that processes them.
-- The row is the job: one INSERT ... ON CONFLICT (dedup_key) DO NOTHING makes a delivery durable and
-- drops Evolution's repeated deliveries of the same event.

CREATE TABLE IF NOT EXISTS whatsapp_operator.webhook_inbox (
    id              bigserial   PRIMARY KEY,
    dedup_key       text        NOT NULL UNIQUE,
    event           text        NOT NULL,
    instance        text        NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    result          text,
    received_at     timestamptz NOT NULL,
    processed_at    timestamptz
);

CREATE INDEX IF NOT EXISTS webhook_inbox_due_idx
    ON whatsapp_operator.webhook_inbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS webhook_inbox_done_idx
    ON whatsapp_operator.webhook_inbox (processed_at) WHERE status = 'done';

COMMENT ON TABLE whatsapp_operator.webhook_inbox IS
    'Evolution webhooks accepted by the operator; queued rows are jobs, dead rows wait for `whatsapp-operator webhooks replay`';
COMMENT ON COLUMN whatsapp_operator.webhook_inbox.dedup_key IS
    'sha256 of the stored envelope: every delivery of one event has the same key';
COMMENT ON COLUMN whatsapp_operator.webhook_inbox.payload IS
    'The envelope without credentials: no pairing code, QR payload or instance token';
COMMENT ON COLUMN whatsapp_operator.webhook_inbox.attempts IS
    'Processing attempts started; a job claimed by a replica that died counts as one';
COMMENT ON COLUMN whatsapp_operator.webhook_inbox.next_attempt_at IS
    'When a queued job is due (also the lease of a claimed one); on the operator''s clock';
COMMENT ON COLUMN whatsapp_operator.webhook_inbox.result IS 'What processing did (which instance it woke, or why it ignored the event)';
