-- ADD COLUMN nullable, or with a constant default: metadata only, runs as written.
ALTER TABLE users
    ADD COLUMN nickname text,
    ADD COLUMN active boolean NOT NULL DEFAULT true;
