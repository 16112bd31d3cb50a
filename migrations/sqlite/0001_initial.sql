-- Initial schema of the Switchboard store (SQLite).
--
-- Conventions shared with the future Postgres schema (`switchboard`):
--   * ids are 64-bit integers, times are unix milliseconds (INTEGER / BIGINT);
--   * booleans are declared BOOLEAN (0/1 in SQLite);
--   * registrations and cdrs carry no foreign keys on purpose: they are
--     written in the background (write-behind flusher, CDR delivery) and a
--     concurrently deleted account or user must not make those writes fail.
--     The store removes orphaned registrations itself.

-- Tenants. The account with id 1 is the default account: it serves every SIP
-- domain that no other account claims, and it cannot be deleted.
CREATE TABLE accounts (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT    NOT NULL UNIQUE,
    domain               TEXT    UNIQUE,
    max_concurrent_calls INTEGER NOT NULL DEFAULT 0 CHECK (max_concurrent_calls >= 0),
    created_at           INTEGER NOT NULL
);

INSERT INTO accounts (id, name, domain, max_concurrent_calls, created_at)
VALUES (1, 'default', NULL, 0, CAST(strftime('%s', 'now') AS INTEGER) * 1000);

-- SIP users. Only HA1 digests are stored (hex of username:realm:password),
-- never the password itself.
CREATE TABLE users (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    username     TEXT    NOT NULL,
    extension    TEXT,
    display_name TEXT,
    ha1_md5      TEXT    NOT NULL,
    ha1_sha256   TEXT    NOT NULL,
    enabled      BOOLEAN NOT NULL DEFAULT 1,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (account_id, username),
    UNIQUE (account_id, extension)
);

-- Registrar bindings, persisted so that a restarted server still reaches
-- the phones registered before it stopped.
CREATE TABLE registrations (
    aor         TEXT    NOT NULL,
    contact     TEXT    NOT NULL,
    account_id  INTEGER NOT NULL,
    user_id     INTEGER,
    received    TEXT    NOT NULL,
    path        TEXT,
    instance_id TEXT,
    reg_id      INTEGER,
    user_agent  TEXT,
    call_id     TEXT    NOT NULL,
    cseq        INTEGER NOT NULL,
    q           REAL,
    expires_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (aor, contact)
);

CREATE INDEX registrations_expires_at ON registrations (expires_at);
CREATE INDEX registrations_account_id ON registrations (account_id);
CREATE INDEX registrations_user_id ON registrations (user_id);

-- Call detail records, one per call, keyed for idempotent delivery by call_id.
CREATE TABLE cdrs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id       TEXT    NOT NULL UNIQUE,
    account_id    INTEGER,
    caller        TEXT    NOT NULL,
    callee        TEXT    NOT NULL,
    caller_name   TEXT,
    source        TEXT    NOT NULL,
    invite_at     INTEGER NOT NULL,
    ring_at       INTEGER,
    answer_at     INTEGER,
    end_at        INTEGER,
    ring_ms       INTEGER,
    talk_ms       INTEGER,
    disposition   TEXT    NOT NULL,
    hangup_code   INTEGER,
    hangup_reason TEXT,
    hangup_side   TEXT,
    route_id      INTEGER,
    node          TEXT,
    rtp_sent      INTEGER,
    rtp_received  INTEGER,
    rtp_lost      INTEGER,
    jitter_ms     REAL,
    mos           REAL,
    rtpmanager    TEXT,
    created_at    INTEGER NOT NULL
);

CREATE INDEX cdrs_invite_at ON cdrs (invite_at);
CREATE INDEX cdrs_account_id ON cdrs (account_id);
CREATE INDEX cdrs_caller ON cdrs (caller);
CREATE INDEX cdrs_callee ON cdrs (callee);
