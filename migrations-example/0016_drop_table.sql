-- DROP TABLE: deferred to contract.
DROP TABLE legacy_sessions;
