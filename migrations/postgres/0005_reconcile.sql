-- Reconciliation: uploads that were issued but never announced are looked up in the store.
-- vended_at: when credentials for the upload were last handed out (NULL: at created_at);
-- next_check_at: when the store is next asked (NULL: after the quiet time from created_at);
-- checks: how often it was asked, for the backoff.
ALTER TABLE uploads ADD COLUMN vended_at BIGINT;
ALTER TABLE uploads ADD COLUMN next_check_at BIGINT;
ALTER TABLE uploads ADD COLUMN checks BIGINT NOT NULL DEFAULT 0;
-- The multipart upload a browser's signed requests belong to (`POST /v1/uploads/{id}/sign`),
-- so it can be listed, resumed or aborted.
ALTER TABLE uploads ADD COLUMN multipart_upload_id TEXT;
CREATE INDEX uploads_unannounced ON uploads (created_at) WHERE state = 'issued';

-- Where the listing of the upload prefix (reconcile.list_unannounced) goes on: the last key
-- of the last page, or '' to start over. Advanced by compare-and-set on its version, so
-- several instances never list the same page twice.
CREATE TABLE reconcile_cursors (
    name TEXT PRIMARY KEY NOT NULL,
    cursor TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
