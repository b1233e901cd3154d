-- ADD PRIMARY KEY: a concurrent unique index, NOT NULL proven by a validated check, then USING INDEX.
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id);
