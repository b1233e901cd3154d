-- RENAME TABLE: the old version gets a view under the old name, then the table is renamed at expand.
ALTER TABLE organizations_src RENAME TO organizations;
