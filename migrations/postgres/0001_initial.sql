-- Initial schema of the Switchboard store (Postgres, schema `switchboard`).
--
-- Same tables and meaning as migrations/sqlite/0001_initial.sql:
--   * ids are BIGINT (BIGSERIAL), times are unix milliseconds (BIGINT);
--   * floating point columns are DOUBLE PRECISION (Rust f64);
--   * registrations and cdrs carry no foreign keys on purpose: they are
--     written in the background (write-behind flusher, CDR delivery) and a
--     concurrently deleted account or user must not make those writes fail.
--     The store removes orphaned registrations itself.
-- Tables are created unqualified: connections run with
-- search_path=switchboard, and the store creates the schema before
-- migrating. Unique constraints are named `<table>_<columns>_key` because
-- the store reads the field at fault from the constraint name.

-- Tenants. The account with id 1 is the default account: it serves every SIP
-- domain that no other account claims, and it cannot be deleted.
CREATE TABLE accounts (
    id                   BIGSERIAL PRIMARY KEY,
    name                 TEXT   NOT NULL CONSTRAINT accounts_name_key UNIQUE,
    domain               TEXT   CONSTRAINT accounts_domain_key UNIQUE,
    max_concurrent_calls BIGINT NOT NULL DEFAULT 0 CHECK (max_concurrent_calls >= 0),
    created_at           BIGINT NOT NULL
);

INSERT INTO accounts (id, name, domain, max_concurrent_calls, created_at)
VALUES (1, 'default', NULL, 0, (extract(epoch FROM now()) * 1000)::BIGINT);
-- The explicit id did not advance the sequence.
SELECT setval(pg_get_serial_sequence('accounts', 'id'), 1);

-- SIP users. Only HA1 digests are stored (hex of username:realm:password),
-- never the password itself.
CREATE TABLE users (
    id           BIGSERIAL PRIMARY KEY,
    account_id   BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    username     TEXT    NOT NULL,
    extension    TEXT,
    display_name TEXT,
    ha1_md5      TEXT    NOT NULL,
    ha1_sha256   TEXT    NOT NULL,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    CONSTRAINT users_account_id_username_key UNIQUE (account_id, username),
    CONSTRAINT users_account_id_extension_key UNIQUE (account_id, extension)
);

-- Registrar bindings, persisted so that a restarted server still reaches
-- the phones registered before it stopped.
CREATE TABLE registrations (
    aor         TEXT   NOT NULL,
    contact     TEXT   NOT NULL,
    account_id  BIGINT NOT NULL,
    user_id     BIGINT,
    received    TEXT   NOT NULL,
    path        TEXT,
    instance_id TEXT,
    reg_id      BIGINT,
    user_agent  TEXT,
    call_id     TEXT   NOT NULL,
    cseq        BIGINT NOT NULL,
    q           DOUBLE PRECISION,
    expires_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (aor, contact)
);

CREATE INDEX registrations_expires_at ON registrations (expires_at);
CREATE INDEX registrations_account_id ON registrations (account_id);
CREATE INDEX registrations_user_id ON registrations (user_id);

-- Call detail records, one per call, keyed for idempotent delivery by call_id.
CREATE TABLE cdrs (
    id            BIGSERIAL PRIMARY KEY,
    call_id       TEXT   NOT NULL CONSTRAINT cdrs_call_id_key UNIQUE,
    account_id    BIGINT,
    caller        TEXT   NOT NULL,
    callee        TEXT   NOT NULL,
    caller_name   TEXT,
    source        TEXT   NOT NULL,
    invite_at     BIGINT NOT NULL,
    ring_at       BIGINT,
    answer_at     BIGINT,
    end_at        BIGINT,
    ring_ms       BIGINT,
    talk_ms       BIGINT,
    disposition   TEXT   NOT NULL,
    hangup_code   BIGINT,
    hangup_reason TEXT,
    hangup_side   TEXT,
    route_id      BIGINT,
    node          TEXT,
    rtp_sent      BIGINT,
    rtp_received  BIGINT,
    rtp_lost      BIGINT,
    jitter_ms     DOUBLE PRECISION,
    mos           DOUBLE PRECISION,
    rtpmanager    TEXT,
    created_at    BIGINT NOT NULL
);

CREATE INDEX cdrs_invite_at ON cdrs (invite_at);
CREATE INDEX cdrs_account_id ON cdrs (account_id);
CREATE INDEX cdrs_caller ON cdrs (caller);
CREATE INDEX cdrs_callee ON cdrs (callee);
