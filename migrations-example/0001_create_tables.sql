-- The schema the other examples change. Tables created here are new: nothing to plan.
CREATE TABLE organizations_src (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text,
    email text,
    age integer,
    org_id bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint,
    total numeric(10,2),
    status text NOT NULL DEFAULT 'new'
);

CREATE TABLE events (
    id bigint NOT NULL,
    payload jsonb
);

CREATE TABLE legacy_sessions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token text
);

CREATE INDEX users_created_at_idx ON users (created_at);
