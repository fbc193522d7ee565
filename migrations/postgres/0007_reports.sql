-- Reports of webhook processors on their outcome, once per `webhook-id`: a repeat changes
-- nothing, and operators read each (with the processor's error) on the upload.
CREATE TABLE reports (
    webhook_id TEXT PRIMARY KEY NOT NULL,
    trigger_id TEXT NOT NULL,
    state TEXT NOT NULL,
    code TEXT,
    message TEXT,
    received_at BIGINT NOT NULL
);
CREATE INDEX reports_trigger ON reports (trigger_id);
