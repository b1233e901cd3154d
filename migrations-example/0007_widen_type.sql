-- A type change that does not rewrite (numeric precision increase, same scale): as written.
ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2);
