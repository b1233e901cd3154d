-- A rewriting type change: a column of the new type, converting triggers, backfill, swap.
ALTER TABLE users ALTER COLUMN age TYPE bigint;
