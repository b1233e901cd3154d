-- CREATE INDEX on an existing table: built CONCURRENTLY, outside any transaction.
CREATE INDEX orders_user_id_idx ON orders (user_id);
