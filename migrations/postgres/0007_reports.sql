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

-- What changed since a moment: every instance reads it a few times a second, so that a
-- stream of an upload's states sees changes made by any instance.
CREATE INDEX uploads_updated ON uploads (updated_at);
