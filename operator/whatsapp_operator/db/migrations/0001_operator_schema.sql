-- The operator's own schema and its append-only history of phase transitions (uptime, audits).
-- Every statement is idempotent: yoyo records a migration in a separate transaction after applying
-- it, so a crash in between makes the next run apply it again.
-- Later issues add their tables (webhook inbox and queue, notification outbox) in further files.

CREATE SCHEMA IF NOT EXISTS whatsapp_operator;

CREATE TABLE IF NOT EXISTS whatsapp_operator.transitions (
    id                 bigserial   PRIMARY KEY,
    event_id           uuid        NOT NULL UNIQUE,
    namespace          text        NOT NULL,
    instance           text        NOT NULL,
    evolution_instance text        NOT NULL,
    driver_id          text        NOT NULL,
    from_phase         text,
    to_phase           text        NOT NULL,
    state              text,
    status_reason      integer,
    forced             boolean     NOT NULL DEFAULT false,
    occurred_at        timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS transitions_driver_id_occurred_at_idx
    ON whatsapp_operator.transitions (driver_id, occurred_at);

COMMENT ON TABLE whatsapp_operator.transitions IS
    'Append-only: one row per phase change of a WhatsAppInstance, written by the operator''s mirror';
COMMENT ON COLUMN whatsapp_operator.transitions.event_id IS
    'Chosen when the operator observed the change, so a retried write cannot add a second row';
COMMENT ON COLUMN whatsapp_operator.transitions.instance IS 'WhatsAppInstance resource name';
COMMENT ON COLUMN whatsapp_operator.transitions.evolution_instance IS 'Instance name on the Evolution server';
COMMENT ON COLUMN whatsapp_operator.transitions.driver_id IS 'usuarios.id as text, whatever its type there';
COMMENT ON COLUMN whatsapp_operator.transitions.occurred_at IS 'When the operator observed the change';
COMMENT ON COLUMN whatsapp_operator.transitions.recorded_at IS 'When the row reached Postgres (later during an outage)';
