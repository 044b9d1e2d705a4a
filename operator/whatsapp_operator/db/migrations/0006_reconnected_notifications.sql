-- "Your WhatsApp is back" messages: a notification of kind 'reconnected' for an episode whose
-- disconnection was notified. One disconnection notification per episode still, and one
-- reconnected notification: the key becomes (instance, episode, whether it is a reconnection).
-- Idempotent: each constraint is dropped if present and made again.

ALTER TABLE whatsapp_operator.notifications DROP CONSTRAINT IF EXISTS notifications_kind_check;
ALTER TABLE whatsapp_operator.notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('disconnected', 'logged_out', 'reconnected'));
ALTER TABLE whatsapp_operator.notifications DROP CONSTRAINT IF EXISTS notifications_instance_uid_episode_key;
CREATE UNIQUE INDEX IF NOT EXISTS notifications_episode_key
    ON whatsapp_operator.notifications (instance_uid, episode, (kind = 'reconnected'));
