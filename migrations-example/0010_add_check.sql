-- ADD CHECK: NOT VALID in expand, VALIDATE in contract.
ALTER TABLE orders ADD CONSTRAINT orders_total_nonnegative CHECK (total >= 0);
