-- ADD COLUMN with a volatile default: added nullable, SET DEFAULT, existing rows backfilled.
ALTER TABLE users ADD COLUMN public_id uuid DEFAULT gen_random_uuid();
