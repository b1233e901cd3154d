-- RENAME COLUMN: the old version gets a view keeping `name`, then the column is renamed at expand.
ALTER TABLE users RENAME COLUMN name TO full_name;
