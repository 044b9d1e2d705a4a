-- Drift repairs in the history: a row whose from_phase and to_phase are the same and whose `repaired`
-- says what the application's row held before the operator rewrote it (docs/drift.md).
-- Idempotent, like every migration here.

ALTER TABLE whatsapp_operator.transitions ADD COLUMN IF NOT EXISTS repaired text;

COMMENT ON COLUMN whatsapp_operator.transitions.repaired IS
    'Set on drift repairs only: what the driver''s row held that disagreed with the phase';
