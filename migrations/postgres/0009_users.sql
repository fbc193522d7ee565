-- Permission control: each user's standing, keyed by the user segment their uploads live
-- under (a function of the token's subject, and what an object's key names when the store
-- announces it without a request). The plan named by their most recent token, an operator's
-- override, and suspension. Usage is not kept here: it is counted from the uploads
-- themselves, the store's sizes once verified; this row is what a reservation locks, so that
-- instances sharing the database count one user's uploads one at a time.
CREATE TABLE users (
    owner TEXT PRIMARY KEY NOT NULL,
    subject TEXT,
    plan TEXT,
    plan_override TEXT,
    suspended BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);

-- What an upload holds against its plan while its size is not known (no size declared: the
-- plan's largest file), until the store's size replaces it.
ALTER TABLE uploads ADD COLUMN reserved_bytes BIGINT;
CREATE INDEX uploads_owner_created ON uploads (owner, created_at);
