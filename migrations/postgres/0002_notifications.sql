CREATE TABLE workflows (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    bucket TEXT NOT NULL,
    prefix TEXT NOT NULL,
    output_prefix TEXT,
    sink TEXT NOT NULL,
    media_workflow_id TEXT,
    webhook_url TEXT,
    webhook_secret TEXT,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE events (
    id TEXT PRIMARY KEY NOT NULL,
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    etag TEXT NOT NULL,
    size BIGINT,
    content_type TEXT,
    source TEXT NOT NULL,
    upload_id TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    received_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX events_object ON events (bucket, object_key, etag);

CREATE TABLE triggers (
    id TEXT PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL,
    upload_id TEXT,
    workflow_id TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    sink TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claim_id TEXT,
    lease_until BIGINT,
    last_error TEXT,
    media_id TEXT,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX triggers_due ON triggers (state, next_attempt_at);
CREATE INDEX triggers_upload ON triggers (upload_id);
