-- RENAME COLUMN: a new column kept equal to the old one by triggers until contract drops it.
ALTER TABLE users RENAME COLUMN name TO full_name;
