-- migrate:no-transaction
-- Explicit phases: the file says which statement runs when, and each section is checked
-- against what its phase allows. The backfill UPDATE runs in batches; the contract section
-- runs outside a transaction so VALIDATE does not hold the ADD's lock.

-- migrate:expand
-- Rows the old version writes from now on get the default; the backfill fills the rest (a
-- default given in ADD COLUMN would do both at once, but this shows the phases).
ALTER TABLE orders
    ADD COLUMN IF NOT EXISTS currency text,
    ALTER COLUMN currency SET DEFAULT 'EUR';

-- migrate:backfill
UPDATE orders SET currency = 'EUR' WHERE currency IS NULL;

-- migrate:contract
ALTER TABLE orders ADD CONSTRAINT orders_currency_not_null CHECK (currency IS NOT NULL) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_currency_not_null;
ALTER TABLE orders ALTER COLUMN currency SET NOT NULL;
ALTER TABLE orders DROP CONSTRAINT orders_currency_not_null;
