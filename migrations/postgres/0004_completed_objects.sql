-- An object is processed once: the first notification that completes it claims its
-- (bucket, key) here, in the same transaction as its triggers. A later notification for the
-- same object (another ETag, any source) finds the claim taken and is recorded as a repeat.
CREATE TABLE objects (
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    upload_id TEXT,
    completed_at BIGINT NOT NULL,
    PRIMARY KEY (bucket, object_key)
);

-- Objects completed before this table existed: the first event of each, unless it was a
-- callback for an object mediagate had not issued (those never completed anything).
INSERT INTO objects (bucket, object_key, event_id, upload_id, completed_at)
SELECT e.bucket, e.object_key, e.id, e.upload_id, e.received_at
FROM events e
WHERE e.id = (
    SELECT MIN(x.id) FROM events x
    WHERE x.bucket = e.bucket AND x.object_key = e.object_key
      AND NOT (x.source = 'oss-callback' AND x.upload_id IS NULL)
);

-- Users see a reason from a fixed vocabulary; the detail stays on the event.
UPDATE uploads SET state_reason = CASE
    WHEN state_reason LIKE 'not a%' THEN 'not_media'
    WHEN state_reason LIKE 'no %' THEN 'no_matching_workflow'
    WHEN state_reason LIKE 'object size%' THEN 'size_mismatch'
    ELSE NULL END
WHERE state_reason IS NOT NULL;
