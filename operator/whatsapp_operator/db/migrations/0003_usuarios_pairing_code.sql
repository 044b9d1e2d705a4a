-- The original plan's Phase 3 (pairing-code columns), rewritten to be idempotent so that it also
-- applies to an application table that already has some of these columns.
-- depends: 0002_usuarios_minimal

ALTER TABLE public.usuarios
    ADD COLUMN IF NOT EXISTS pairing_code VARCHAR(8),
    ADD COLUMN IF NOT EXISTS pairing_code_generated_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS pairing_code_expires_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS pairing_code_attempts INT DEFAULT 0;

-- A pre-existing attempts column may lack the default the plan gives it.
ALTER TABLE public.usuarios ALTER COLUMN pairing_code_attempts SET DEFAULT 0;

-- Índice para limpeza de códigos expirados.
CREATE INDEX IF NOT EXISTS idx_usuarios_pairing_code_expires_at
    ON public.usuarios (pairing_code_expires_at)
    WHERE pairing_code IS NOT NULL;

COMMENT ON COLUMN public.usuarios.pairing_code IS 'Código de pareamento de 8 dígitos (válido por ~60s)';
COMMENT ON COLUMN public.usuarios.pairing_code_generated_at IS 'Timestamp de geração do código';
COMMENT ON COLUMN public.usuarios.pairing_code_expires_at IS 'Timestamp de expiração do código';
COMMENT ON COLUMN public.usuarios.pairing_code_attempts IS 'Número de tentativas de uso do código';
