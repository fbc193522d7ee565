CREATE TABLE uploads (
    id TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    subject TEXT NOT NULL,
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    file_name TEXT NOT NULL,
    size BIGINT,
    content_type TEXT,
    mode TEXT NOT NULL,
    media TEXT NOT NULL,
    state TEXT NOT NULL,
    state_reason TEXT,
    created_at BIGINT NOT NULL,
    uploaded_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX uploads_owner_id ON uploads (owner, id DESC);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
