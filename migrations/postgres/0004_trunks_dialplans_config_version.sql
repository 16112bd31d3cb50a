-- Configuration shared by every signaling replica: SIP trunks, versions of
-- the JSON dialplan, and a change counter the replicas poll to notice each
-- other's writes (same meaning as migrations/sqlite/0004_...).

-- SIP trunks by name. `config` is JSON text owned by the signaling crate,
-- kept as TEXT (not JSONB) so it reads back byte for byte.
CREATE TABLE trunks (
    name       TEXT   PRIMARY KEY,
    config     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Saved dialplans; the row with the largest id is the current one. The
-- store keeps the newest few and deletes older ones as it saves.
CREATE TABLE dialplans (
    id         BIGSERIAL PRIMARY KEY,
    config     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- One row whose `version` grows by at least one with every statement that
-- writes accounts, users, trunks or dialplans, in that statement's
-- transaction: a replica that sees a new version after the commit also sees
-- the change. (A sequence would not do: nextval is not transactional.)
CREATE TABLE config_version (
    id      SMALLINT PRIMARY KEY CHECK (id = 1),
    version BIGINT   NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 1);

-- search_path is pinned so the trigger also works for sessions (psql, a
-- restore) that did not set search_path=switchboard.
CREATE FUNCTION bump_config_version() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE config_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

-- Statement-level: one bump per statement, however many rows it touched
-- (also for statements that matched no row; a spurious bump only costs the
-- replicas a reload).
CREATE TRIGGER accounts_config_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
CREATE TRIGGER users_config_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
CREATE TRIGGER trunks_config_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON trunks
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
CREATE TRIGGER dialplans_config_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON dialplans
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
