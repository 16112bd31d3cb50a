-- The database's own identity: a random id given once, when the table is
-- created. Replicas sharing one database report the same id (the
-- dashboard counts a shared database's figures once); two databases never
-- do. Same meaning as migrations/sqlite/0005_store_id_and_call_minutes.sql.
CREATE TABLE store_meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    store_id TEXT    NOT NULL
);
INSERT INTO store_meta (id, store_id)
VALUES (1, md5(random()::text || clock_timestamp()::text || pg_backend_pid()::text));

-- Calls per minute (GET /api/v1/stats/calls) can be answered from this
-- index alone (an index-only scan): the INVITE time as the key, as in the
-- index it replaces, with the answer and MOS columns carried along.
CREATE INDEX cdrs_invite_at_outcome ON cdrs (invite_at) INCLUDE (answer_at, disposition, mos);
DROP INDEX cdrs_invite_at;
