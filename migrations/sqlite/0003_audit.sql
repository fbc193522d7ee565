-- Admin changes: who (the admin token's holder, from which address, in which request),
-- when, and what. Ids are UUIDv7, so their order is the order of the changes.
CREATE TABLE audit (
    id TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    request_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
