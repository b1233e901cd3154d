-- DROP INDEX: DROP INDEX CONCURRENTLY, in contract.
DROP INDEX users_created_at_idx;
