-- SET NOT NULL: a trigger fills NULLs the old version writes, a batched backfill fills the rest,
-- then CHECK NOT VALID, VALIDATE, SET NOT NULL (no scan from PostgreSQL 12), drop the check.
UPDATE users SET email = 'unknown@example.com' WHERE email IS NULL;
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
