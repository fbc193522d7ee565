-- Lifecycle events for the app's own backend (`[events]`). Each change of an upload's state
-- to a type listed here queues one delivery in the trigger queue, in the statement (and so
-- the transaction) that made the change, whichever code path made it: retries, dead letter
-- and replay are the queue's. The list is the running configuration's `[events] types`,
-- written at start (empty without `[events]`, so nothing is queued).
CREATE TABLE event_types (
    type TEXT PRIMARY KEY NOT NULL
);

-- The queued event: sink `events`, `event_id` the upload it tells of, no `upload_id` (it is
-- no work on the upload, so it takes no part in the upload's state), `workflow_name` the
-- event type, and the change itself as payload; due at once. Its id is the event's
-- `webhook-id`.
CREATE FUNCTION queue_upload_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO triggers (id, event_id, upload_id, workflow_id, workflow_name, sink, state,
                          attempts, next_attempt_at, payload, created_at, updated_at)
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), NEW.id, NULL, '',
           event_types.type, 'events', 'pending', 0, 0,
           json_build_object('type', event_types.type, 'upload_id', NEW.id, 'state', NEW.state,
                             'state_reason', NEW.state_reason, 'at', NEW.updated_at)::text,
           NEW.updated_at, NEW.updated_at
    FROM event_types WHERE event_types.type = 'upload.' || NEW.state;
    RETURN NULL;
END;
$$;

CREATE TRIGGER uploads_state_events AFTER UPDATE OF state ON uploads
FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION queue_upload_event();

CREATE TRIGGER uploads_new_events AFTER INSERT ON uploads
FOR EACH ROW EXECUTE FUNCTION queue_upload_event();

-- An upload's events, for its admin view.
CREATE INDEX triggers_event ON triggers (event_id);
