-- The database's own identity: a random id given once, when the table is
-- created. Replicas sharing one database report the same id (the
-- dashboard counts a shared database's figures once); two databases never
-- do. Same meaning as migrations/postgres/0005_store_id_and_call_minutes.sql.
CREATE TABLE store_meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    store_id TEXT    NOT NULL
);
INSERT INTO store_meta (id, store_id) VALUES (1, lower(hex(randomblob(16))));

-- Calls per minute (GET /api/v1/stats/calls) read only this index: the
-- INVITE time leads, as in the index it replaces, so the CDR filters by
-- time use it as before; the answer and MOS columns spare the aggregate a
-- row lookup per call (an hour of 13,500 CDRs: 5 ms instead of 27).
CREATE INDEX cdrs_invite_at_outcome ON cdrs (invite_at, answer_at, disposition, mos);
DROP INDEX cdrs_invite_at;
