-- ADD FOREIGN KEY: NOT VALID in expand, VALIDATE in contract. orders.user_id is indexed by 0002.
ALTER TABLE orders ADD CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
