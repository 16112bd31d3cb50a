-- Configuration shared by every signaling replica: SIP trunks, versions of
-- the JSON dialplan, and a change counter polled to notice writes (same
-- meaning as migrations/postgres/0004_...).

-- SIP trunks by name. `config` is JSON text owned by the signaling crate.
CREATE TABLE trunks (
    name       TEXT    PRIMARY KEY,
    config     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Saved dialplans; the row with the largest id is the current one. The
-- store keeps the newest few and deletes older ones as it saves.
-- AUTOINCREMENT: an id is never handed out twice, even after deletions.
CREATE TABLE dialplans (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    config     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- One row whose `version` grows with every row written in accounts, users,
-- trunks or dialplans, inside the writing transaction.
CREATE TABLE config_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 1);

CREATE TRIGGER accounts_insert_config_version AFTER INSERT ON accounts
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER accounts_update_config_version AFTER UPDATE ON accounts
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER accounts_delete_config_version AFTER DELETE ON accounts
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER users_insert_config_version AFTER INSERT ON users
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER users_update_config_version AFTER UPDATE ON users
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER users_delete_config_version AFTER DELETE ON users
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER trunks_insert_config_version AFTER INSERT ON trunks
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER trunks_update_config_version AFTER UPDATE ON trunks
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER trunks_delete_config_version AFTER DELETE ON trunks
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER dialplans_insert_config_version AFTER INSERT ON dialplans
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER dialplans_update_config_version AFTER UPDATE ON dialplans
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER dialplans_delete_config_version AFTER DELETE ON dialplans
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
