-- Following processing to its outcome (after the trigger).
-- A workflow's `track_outcome` (NULL: its sink's default, on for MPS) and where its outputs
-- may be (`output_bucket`, NULL: its own bucket).
ALTER TABLE workflows ADD COLUMN track_outcome BIGINT;
ALTER TABLE workflows ADD COLUMN output_bucket TEXT;
-- A trigger's outcome once delivered: NULL when its workflow does not track one, else
-- pending | running | succeeded | failed | timed_out, with the reason users see when it
-- failed. `tracks_outcome` is decided when the trigger is queued.
ALTER TABLE triggers ADD COLUMN tracks_outcome BIGINT NOT NULL DEFAULT 0;
ALTER TABLE triggers ADD COLUMN outcome TEXT;
ALTER TABLE triggers ADD COLUMN outcome_reason TEXT;
-- An operator's reprocessing supersedes an upload's earlier triggers: kept for the record,
-- they no longer decide its state.
ALTER TABLE triggers ADD COLUMN superseded BIGINT NOT NULL DEFAULT 0;

-- One MPS workflow execution (RunId) started by a delivered trigger, looked up through the
-- MPS API on its own backoff until it ends (or its trigger's outcome times out). A lookup claims its runs by
-- moving their next_check_at past a lease (as reconciliation claims uploads), so several
-- instances look each run up once per due time.
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY NOT NULL,
    trigger_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    upload_id TEXT,
    media_id TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    next_check_at BIGINT NOT NULL,
    interval_ms BIGINT NOT NULL,
    lookups BIGINT NOT NULL,
    output_looks BIGINT NOT NULL DEFAULT 0,
    reason TEXT,
    hinted_at BIGINT,
    last_result TEXT,
    results TEXT,
    activities TEXT,
    code TEXT,
    message TEXT,
    finished_at BIGINT
);
CREATE INDEX runs_due ON runs (state, next_check_at);
CREATE INDEX runs_trigger ON runs (trigger_id);

-- What a succeeded outcome produced, each object checked in the store before it was kept.
CREATE TABLE outputs (
    trigger_id TEXT NOT NULL,
    name TEXT NOT NULL,
    upload_id TEXT,
    workflow_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    format TEXT,
    width BIGINT,
    height BIGINT,
    duration_ms BIGINT,
    size BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (trigger_id, name)
);
CREATE INDEX outputs_upload ON outputs (upload_id);
