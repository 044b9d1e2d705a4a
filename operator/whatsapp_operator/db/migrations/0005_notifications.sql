-- Driver notifications: one row per decision, and one delivery row per channel (the outbox).
-- UNIQUE (instance_uid, episode) makes a second notification for one disconnection episode
-- impossible, whichever replica or restart tries to write it.

CREATE TABLE IF NOT EXISTS whatsapp_operator.notifications (
    id              bigserial   PRIMARY KEY,
    instance_uid    text        NOT NULL,
    episode         timestamptz NOT NULL,
    namespace       text        NOT NULL,
    name            text        NOT NULL,
    instance        text        NOT NULL,
    server          text        NOT NULL,
    driver_id       text        NOT NULL,
    driver_name     text        NOT NULL DEFAULT '',
    phone           text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('disconnected', 'logged_out')),
    reason          integer,
    decided_at      timestamptz NOT NULL,
    UNIQUE (instance_uid, episode)
);

CREATE TABLE IF NOT EXISTS whatsapp_operator.notification_deliveries (
    notification_id bigint      NOT NULL REFERENCES whatsapp_operator.notifications (id) ON DELETE CASCADE,
    channel         text        NOT NULL CHECK (channel IN ('whatsapp', 'event', 'callback')),
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    delivered_at    timestamptz,
    PRIMARY KEY (notification_id, channel)
);

CREATE INDEX IF NOT EXISTS notification_deliveries_due_idx
    ON whatsapp_operator.notification_deliveries (next_attempt_at) WHERE state = 'pending';

COMMENT ON TABLE whatsapp_operator.notifications IS
    'One row per decision to tell a driver their WhatsApp link broke; episode = when the instance had connected';
COMMENT ON TABLE whatsapp_operator.notification_deliveries IS
    'Each channel of a notification: pending until delivered, failed (never retried) or dead (out of time)';
