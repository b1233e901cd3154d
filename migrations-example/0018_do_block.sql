-- Opaque statements run as written, with a warning that they cannot be verified.
DO $$
BEGIN
    RAISE NOTICE 'migrations-example: % users', (SELECT count(*) FROM users);
END
$$;
