-- Pairing by QR code: the QR's payload for the application to render, beside the pairing-code columns
-- (the same lifecycle: written with each new QR, cleared when it dies). Optional for an application
-- table configured elsewhere: the operator writes it only where the column exists.
-- depends: 0003_usuarios_pairing_code

ALTER TABLE public.usuarios ADD COLUMN IF NOT EXISTS pairing_qr_code TEXT;

COMMENT ON COLUMN public.usuarios.pairing_qr_code IS
    'QR payload to render while pairing by QR (spec.pairing.method qrcode); NULL once it is dead';
