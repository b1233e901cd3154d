-- ADD CHECK: NOT VALID in expand, VALIDATE in contract. (A CHECK on orders.total would be
-- refused here: 0007 swaps that column at its contract, so a check on it waits until then.)
ALTER TABLE orders ADD CONSTRAINT orders_status_known CHECK (status IN ('new', 'paid', 'shipped'));
