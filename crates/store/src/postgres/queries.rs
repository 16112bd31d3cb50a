//! The SQL of [`PgBackend`]: the same statements as the SQLite backend in
//! Postgres' dialect, except the batch writes.
//!
//! Batches (`upsert_registrations`, `insert_cdrs`) go as one statement per
//! [`BATCH_CHUNK`] rows, each column bound as an array and expanded with
//! `UNNEST`: one round trip and one prepared statement whatever the batch
//! size. Rows are sorted by key first, so two replicas writing overlapping
//! batches lock the keys in the same order and cannot deadlock; the sort
//! also drops duplicate keys (an `ON CONFLICT DO UPDATE` statement may not
//! touch a row twice), keeping the row a sequence of single writes would
//! have left: the last registration, the first CDR.
//!
//! Orderings by text use `COLLATE "C"` (byte order, as SQLite compares), so
//! results do not depend on the database's locale.

use sqlx::{Postgres, QueryBuilder};
use tracing::debug;

use super::PgBackend;
use crate::columns::{
    account_cols, call_minutes_sql, cdr_cols, push_cdr_filter, push_user_filter, registration_cols,
    user_cols,
};
use crate::error::{Error, Result};
use crate::model::{
    Account, AccountPatch, CallMinute, Cdr, CdrFilter, DEFAULT_ACCOUNT_ID, NewAccount, NewUser,
    Registration, User, UserFilter, UserPatch,
};
use crate::now_ms;
use crate::store::Store;

/// Rows per batch statement. A larger batch is written in one transaction
/// of several statements, keeping each well inside the statement timeout.
const BATCH_CHUNK: usize = 4096;

/// Upsert of registrations given as 14 arrays, in `registration_cols!`
/// order.
const UPSERT_REGISTRATIONS: &str = concat!(
    "INSERT INTO registrations (",
    registration_cols!(),
    ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], ",
    "$5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[], ",
    "$11::bigint[], $12::float8[], $13::bigint[], $14::bigint[]) ",
    "ON CONFLICT (aor, contact) DO UPDATE SET ",
    "account_id = EXCLUDED.account_id, user_id = EXCLUDED.user_id, ",
    "received = EXCLUDED.received, path = EXCLUDED.path, ",
    "instance_id = EXCLUDED.instance_id, reg_id = EXCLUDED.reg_id, ",
    "user_agent = EXCLUDED.user_agent, call_id = EXCLUDED.call_id, ",
    "cseq = EXCLUDED.cseq, q = EXCLUDED.q, expires_at = EXCLUDED.expires_at, ",
    "updated_at = EXCLUDED.updated_at"
);

/// Idempotent insert of CDRs given as 28 arrays plus `created_at` ($29),
/// inserted in array order (ids follow it).
const INSERT_CDRS: &str = concat!(
    "INSERT INTO cdrs (call_id, account_id, caller, callee, caller_name, source, ",
    "invite_at, ring_at, answer_at, end_at, ring_ms, talk_ms, disposition, hangup_code, ",
    "hangup_reason, hangup_side, route_id, node, rtp_sent, rtp_received, rtp_lost, ",
    "jitter_ms, mos, rtpmanager, created_at, route, caller_user, callee_user, sip_call_id) ",
    "SELECT call_id, account_id, caller, callee, caller_name, source, ",
    "invite_at, ring_at, answer_at, end_at, ring_ms, talk_ms, disposition, hangup_code, ",
    "hangup_reason, hangup_side, route_id, node, rtp_sent, rtp_received, rtp_lost, ",
    "jitter_ms, mos, rtpmanager, $29, route, caller_user, callee_user, sip_call_id ",
    "FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], ",
    "$7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], ",
    "$13::text[], $14::bigint[], $15::text[], $16::text[], $17::bigint[], $18::text[], ",
    "$19::bigint[], $20::bigint[], $21::bigint[], $22::float8[], $23::float8[], ",
    "$24::text[], $25::text[], $26::text[], $27::text[], $28::text[]) WITH ORDINALITY ",
    "AS u(call_id, account_id, caller, callee, caller_name, source, invite_at, ring_at, ",
    "answer_at, end_at, ring_ms, talk_ms, disposition, hangup_code, hangup_reason, ",
    "hangup_side, route_id, node, rtp_sent, rtp_received, rtp_lost, jitter_ms, mos, ",
    "rtpmanager, route, caller_user, callee_user, sip_call_id, ord) ",
    "ORDER BY ord ON CONFLICT (call_id) DO NOTHING"
);

/// One column of `rows`, for binding as an array.
fn col<'a, R, T>(rows: &[&'a R], field: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(|r| field(r)).collect()
}

/// The upsert of one chunk (distinct keys).
fn upsert_chunk<'q>(
    rows: &[&'q Registration],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(UPSERT_REGISTRATIONS)
        .bind(col(rows, |r| r.aor.as_str()))
        .bind(col(rows, |r| r.contact.as_str()))
        .bind(col(rows, |r| r.account_id))
        .bind(col(rows, |r| r.user_id))
        .bind(col(rows, |r| r.received.as_str()))
        .bind(col(rows, |r| r.path.as_deref()))
        .bind(col(rows, |r| r.instance_id.as_deref()))
        .bind(col(rows, |r| r.reg_id))
        .bind(col(rows, |r| r.user_agent.as_deref()))
        .bind(col(rows, |r| r.call_id.as_str()))
        .bind(col(rows, |r| r.cseq))
        .bind(col(rows, |r| r.q))
        .bind(col(rows, |r| r.expires_at))
        .bind(col(rows, |r| r.updated_at))
}

/// The idempotent insert of one chunk.
fn insert_cdr_chunk<'q>(
    rows: &[&'q Cdr],
    created_at: i64,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(INSERT_CDRS)
        .bind(col(rows, |c| c.call_id.as_str()))
        .bind(col(rows, |c| c.account_id))
        .bind(col(rows, |c| c.caller.as_str()))
        .bind(col(rows, |c| c.callee.as_str()))
        .bind(col(rows, |c| c.caller_name.as_deref()))
        .bind(col(rows, |c| c.source.as_str()))
        .bind(col(rows, |c| c.invite_at))
        .bind(col(rows, |c| c.ring_at))
        .bind(col(rows, |c| c.answer_at))
        .bind(col(rows, |c| c.end_at))
        .bind(col(rows, |c| c.ring_ms))
        .bind(col(rows, |c| c.talk_ms))
        .bind(col(rows, |c| c.disposition.as_str()))
        .bind(col(rows, |c| c.hangup_code))
        .bind(col(rows, |c| c.hangup_reason.as_deref()))
        .bind(col(rows, |c| c.hangup_side.as_deref()))
        .bind(col(rows, |c| c.route_id))
        .bind(col(rows, |c| c.node.as_deref()))
        .bind(col(rows, |c| c.rtp_sent))
        .bind(col(rows, |c| c.rtp_received))
        .bind(col(rows, |c| c.rtp_lost))
        .bind(col(rows, |c| c.jitter_ms))
        .bind(col(rows, |c| c.mos))
        .bind(col(rows, |c| c.rtpmanager.as_deref()))
        .bind(col(rows, |c| c.route.as_deref()))
        .bind(col(rows, |c| c.caller_user.as_deref()))
        .bind(col(rows, |c| c.callee_user.as_deref()))
        .bind(col(rows, |c| c.sip_call_id.as_deref()))
        .bind(created_at)
}

impl PgBackend {
    // ----- accounts -----

    pub(super) async fn list_accounts(&self) -> Result<Vec<Account>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            account_cols!(),
            " FROM accounts ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn get_account(&self, id: i64) -> Result<Account> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            account_cols!(),
            " FROM accounts WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub(super) async fn create_account(&self, new: NewAccount) -> Result<Account> {
        Ok(sqlx::query_as(concat!(
            "INSERT INTO accounts (name, domain, max_concurrent_calls, created_at, srtp) ",
            "VALUES ($1, $2, $3, $4, $5) RETURNING ",
            account_cols!()
        ))
        .bind(new.name)
        .bind(new.domain)
        .bind(new.max_concurrent_calls)
        .bind(now_ms())
        .bind(new.srtp.unwrap_or_else(|| "optional".into()))
        .fetch_one(&self.pool)
        .await?)
    }

    pub(super) async fn update_account(&self, id: i64, patch: AccountPatch) -> Result<Account> {
        let mut qb = QueryBuilder::<Postgres>::new("UPDATE accounts SET ");
        let mut set = qb.separated(", ");
        if let Some(name) = patch.name {
            set.push("name = ").push_bind_unseparated(name);
        }
        if let Some(domain) = patch.domain {
            set.push("domain = ").push_bind_unseparated(domain);
        }
        if let Some(max) = patch.max_concurrent_calls {
            set.push("max_concurrent_calls = ")
                .push_bind_unseparated(max);
        }
        if let Some(srtp) = patch.srtp {
            set.push("srtp = ").push_bind_unseparated(srtp);
        }
        qb.push(" WHERE id = ")
            .push_bind(id)
            .push(concat!(" RETURNING ", account_cols!()));
        Ok(qb.build_query_as::<Account>().fetch_one(&self.pool).await?)
    }

    pub(super) async fn delete_account(&self, id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM registrations WHERE account_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn account_for_domain(&self, domain: &str) -> Result<Account> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            account_cols!(),
            " FROM accounts WHERE domain = $1 OR id = $2 ",
            "ORDER BY CASE WHEN domain = $1 THEN 0 ELSE 1 END LIMIT 1"
        ))
        .bind(domain)
        .bind(DEFAULT_ACCOUNT_ID)
        .fetch_one(&self.pool)
        .await?)
    }

    // ----- users -----

    pub(super) async fn list_users(&self, account_id: Option<i64>) -> Result<Vec<User>> {
        let query = match account_id {
            Some(account_id) => sqlx::query_as(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users WHERE account_id = $1 ORDER BY id"
            ))
            .bind(account_id),
            None => sqlx::query_as(concat!("SELECT ", user_cols!(), " FROM users ORDER BY id")),
        };
        Ok(query.fetch_all(&self.pool).await?)
    }

    pub(super) async fn search_users(&self, filter: &UserFilter) -> Result<(Vec<User>, i64)> {
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM users WHERE TRUE");
        push_user_filter!(count, filter, "ILIKE");
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        let limit = filter.sql_limit();
        if limit == 0 {
            return Ok((Vec::new(), total));
        }
        let mut qb = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE TRUE"
        ));
        push_user_filter!(qb, filter, "ILIKE");
        qb.push(" ORDER BY id LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(filter.sql_offset());
        Ok((
            qb.build_query_as::<User>().fetch_all(&self.pool).await?,
            total,
        ))
    }

    pub(super) async fn get_user(&self, id: i64) -> Result<User> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub(super) async fn find_user(&self, account_id: i64, username: &str) -> Result<Option<User>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE account_id = $1 AND username = $2"
        ))
        .bind(account_id)
        .bind(username)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn find_user_by_extension(
        &self,
        account_id: i64,
        extension: &str,
    ) -> Result<Option<User>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE account_id = $1 AND extension = $2"
        ))
        .bind(account_id)
        .bind(extension)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn create_user(&self, new: NewUser) -> Result<User> {
        let now = now_ms();
        Ok(sqlx::query_as(concat!(
            "INSERT INTO users (account_id, username, extension, display_name, ha1_md5, ",
            "ha1_sha256, enabled, created_at, updated_at) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING ",
            user_cols!()
        ))
        .bind(new.account_id)
        .bind(new.username)
        .bind(new.extension)
        .bind(new.display_name)
        .bind(new.ha1_md5)
        .bind(new.ha1_sha256)
        .bind(new.enabled)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    pub(super) async fn update_user(&self, id: i64, patch: UserPatch) -> Result<User> {
        let mut qb = QueryBuilder::<Postgres>::new("UPDATE users SET updated_at = ");
        qb.push_bind(now_ms());
        if let Some(username) = patch.username {
            qb.push(", username = ").push_bind(username);
        }
        if let Some(extension) = patch.extension {
            qb.push(", extension = ").push_bind(extension);
        }
        if let Some(display_name) = patch.display_name {
            qb.push(", display_name = ").push_bind(display_name);
        }
        if let Some(ha1) = patch.ha1_md5 {
            qb.push(", ha1_md5 = ").push_bind(ha1);
        }
        if let Some(ha1) = patch.ha1_sha256 {
            qb.push(", ha1_sha256 = ").push_bind(ha1);
        }
        if let Some(enabled) = patch.enabled {
            qb.push(", enabled = ").push_bind(enabled);
        }
        qb.push(" WHERE id = ")
            .push_bind(id)
            .push(concat!(" RETURNING ", user_cols!()));
        Ok(qb.build_query_as::<User>().fetch_one(&self.pool).await?)
    }

    pub(super) async fn delete_user(&self, id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM registrations WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    // ----- registrations -----

    pub(super) async fn upsert_registrations(&self, regs: &[Registration]) -> Result<()> {
        // Sorted by key, later rows first within a key; the dedup keeps the
        // first of each run, the last one given.
        let mut rows: Vec<(usize, &Registration)> = regs.iter().enumerate().collect();
        rows.sort_by(|(i, a), (j, b)| {
            (a.aor.as_str(), a.contact.as_str())
                .cmp(&(b.aor.as_str(), b.contact.as_str()))
                .then(j.cmp(i))
        });
        rows.dedup_by(|(_, later), (_, kept)| {
            later.aor == kept.aor && later.contact == kept.contact
        });
        let rows: Vec<&Registration> = rows.into_iter().map(|(_, r)| r).collect();
        if rows.len() <= BATCH_CHUNK {
            upsert_chunk(&rows).execute(&self.pool).await?;
        } else {
            let mut tx = self.pool.begin().await?;
            for chunk in rows.chunks(BATCH_CHUNK) {
                upsert_chunk(chunk).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        debug!(rows = rows.len(), "registrations upserted");
        Ok(())
    }

    pub(super) async fn delete_registrations(&self, keys: &[(String, String)]) -> Result<u64> {
        let aors: Vec<&str> = keys.iter().map(|(aor, _)| aor.as_str()).collect();
        let contacts: Vec<&str> = keys.iter().map(|(_, contact)| contact.as_str()).collect();
        Ok(sqlx::query(
            "DELETE FROM registrations r USING UNNEST($1::text[], $2::text[]) AS k(aor, contact) \
             WHERE r.aor = k.aor AND r.contact = k.contact",
        )
        .bind(aors)
        .bind(contacts)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub(super) async fn delete_aor(&self, aor: &str) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM registrations WHERE aor = $1")
            .bind(aor)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub(super) async fn load_registrations(&self, now_ms: i64) -> Result<Vec<Registration>> {
        let mut tx = self.pool.begin().await?;
        let purged = sqlx::query(
            "DELETE FROM registrations WHERE expires_at <= $1 \
             OR account_id NOT IN (SELECT id FROM accounts) \
             OR (user_id IS NOT NULL AND user_id NOT IN (SELECT id FROM users))",
        )
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let rows: Vec<Registration> = sqlx::query_as(concat!(
            "SELECT ",
            registration_cols!(),
            " FROM registrations ORDER BY aor COLLATE \"C\", contact COLLATE \"C\""
        ))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        debug!(purged, loaded = rows.len(), "registrations loaded");
        Ok(rows)
    }

    // ----- cdrs -----

    pub(super) async fn insert_cdr(&self, cdr: &Cdr) -> Result<bool> {
        let inserted = insert_cdr_chunk(&[cdr], now_ms())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if inserted == 0 {
            debug!(call_id = %cdr.call_id, "duplicate cdr ignored");
        }
        Ok(inserted > 0)
    }

    pub(super) async fn insert_cdrs(&self, cdrs: &[Cdr]) -> Result<u64> {
        // A stable sort: the dedup keeps the first CDR given per call_id.
        let mut rows: Vec<&Cdr> = cdrs.iter().collect();
        rows.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        rows.dedup_by(|later, kept| later.call_id == kept.call_id);
        let created_at = now_ms();
        if rows.len() <= BATCH_CHUNK {
            return Ok(insert_cdr_chunk(&rows, created_at)
                .execute(&self.pool)
                .await?
                .rows_affected());
        }
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for chunk in rows.chunks(BATCH_CHUNK) {
            inserted += insert_cdr_chunk(chunk, created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub(super) async fn get_cdr(&self, call_id: &str) -> Result<Cdr> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            cdr_cols!(),
            " FROM cdrs WHERE call_id = $1"
        ))
        .bind(call_id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub(super) async fn list_cdrs(&self, filter: &CdrFilter) -> Result<Vec<Cdr>> {
        let mut qb =
            QueryBuilder::<Postgres>::new(concat!("SELECT ", cdr_cols!(), " FROM cdrs WHERE TRUE"));
        push_cdr_filter!(qb, filter);
        Ok(qb.build_query_as::<Cdr>().fetch_all(&self.pool).await?)
    }

    pub(super) async fn call_minutes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<CallMinute>> {
        let rows: Vec<(i64, i64, i64, f64, i64)> =
            sqlx::query_as(call_minutes_sql!("$1", "$1", "$2"))
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(m, attempted, answered, mos_sum, mos_n)| CallMinute {
                at_ms: m * 60_000,
                attempted,
                answered,
                mos_sum,
                mos_n,
            })
            .collect())
    }

    pub(super) async fn store_id(&self) -> Result<String> {
        Ok(
            sqlx::query_scalar("SELECT store_id FROM store_meta WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    // ----- configuration shared by the replicas -----

    pub(super) async fn list_trunks(&self) -> Result<Vec<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT name, config FROM trunks ORDER BY name COLLATE \"C\"")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub(super) async fn put_trunk(&self, name: &str, config: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO trunks (name, config, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET config = EXCLUDED.config, \
             updated_at = EXCLUDED.updated_at",
        )
        .bind(name)
        .bind(config)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn delete_trunk(&self, name: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM trunks WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    pub(super) async fn save_dialplan(&self, config: &str) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO dialplans (config, created_at) VALUES ($1, $2) RETURNING id",
        )
        .bind(config)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM dialplans WHERE id NOT IN \
             (SELECT id FROM dialplans ORDER BY id DESC LIMIT $1)",
        )
        .bind(Store::DIALPLAN_VERSIONS_KEPT)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub(super) async fn latest_dialplan(&self) -> Result<Option<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT id, config FROM dialplans ORDER BY id DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub(super) async fn dialplan_versions(&self) -> Result<Vec<(i64, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT id, created_at, CAST(length(config) AS BIGINT) FROM dialplans ORDER BY id DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn dialplan_version(&self, id: i64) -> Result<Option<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT created_at, config FROM dialplans WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub(super) async fn config_version(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT version FROM config_version WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
