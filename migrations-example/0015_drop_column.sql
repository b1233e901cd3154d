-- DROP COLUMN: deferred to contract, after the old version is gone.
ALTER TABLE users DROP COLUMN nickname;
