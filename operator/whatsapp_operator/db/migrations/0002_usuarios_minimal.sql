-- A stand-in for the application's table, for development and tests only: on a real database the
-- application owns public.usuarios and this statement leaves it untouched.
-- depends: 0001_operator_schema

CREATE TABLE IF NOT EXISTS public.usuarios (
    id              text PRIMARY KEY,
    nome            text,
    telefone        text,
    whatsapp_status text
);
