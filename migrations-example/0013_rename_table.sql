-- RENAME TABLE: renamed, with an updatable view under the old name until contract.
ALTER TABLE organizations_src RENAME TO organizations;
