-- An object is processed once: the first notification that completes it is marked, and a
-- partial unique index lets no second event of the same (bucket, key) be marked. A later
-- notification for the object (another ETag, any source) is recorded as a repeat instead.
--
-- The table is rebuilt clustered on (bucket, key, ETag), the key every write checks and
-- every read uses: recording an event then updates two B-trees (the table and the partial
-- index) where it updated three (the row, its id and the dedupe index).
CREATE TABLE events_by_object (
    id TEXT NOT NULL,
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    etag TEXT NOT NULL,
    size BIGINT,
    content_type TEXT,
    source TEXT NOT NULL,
    upload_id TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    received_at BIGINT NOT NULL,
    completes BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, object_key, etag)
) WITHOUT ROWID;

INSERT INTO events_by_object (id, bucket, object_key, etag, size, content_type, source, upload_id, outcome, reason, received_at)
SELECT id, bucket, object_key, etag, size, content_type, source, upload_id, outcome, reason, received_at FROM events;
DROP TABLE events;
ALTER TABLE events_by_object RENAME TO events;

-- Objects completed before: the first event of each, unless it was a callback for an object
-- mediagate had not issued (those never completed anything).
UPDATE events SET completes = 1 WHERE id IN (
    SELECT MIN(id) FROM events
    WHERE NOT (source = 'oss-callback' AND upload_id IS NULL)
    GROUP BY bucket, object_key
);

CREATE UNIQUE INDEX events_completing ON events (bucket, object_key) WHERE completes = 1;

-- Users see a reason from a fixed vocabulary; the detail stays on the event.
UPDATE uploads SET state_reason = CASE
    WHEN state_reason LIKE 'not a%' THEN 'not_media'
    WHEN state_reason LIKE 'no %' THEN 'no_matching_workflow'
    WHEN state_reason LIKE 'object size%' THEN 'size_mismatch'
    ELSE NULL END
WHERE state_reason IS NOT NULL;
