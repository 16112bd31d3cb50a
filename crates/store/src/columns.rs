//! Column lists shared by the backends' SQL, as macros expanding to string
//! literals so `concat!` can build whole statements at compile time. Each
//! names every field of its record in `model` (`sqlx::FromRow` maps them
//! by name).

macro_rules! account_cols {
    () => {
        "id, name, domain, max_concurrent_calls, created_at, srtp"
    };
}
macro_rules! user_cols {
    () => {
        "id, account_id, username, extension, display_name, ha1_md5, ha1_sha256, enabled, \
         created_at, updated_at"
    };
}
macro_rules! registration_cols {
    () => {
        "aor, contact, account_id, user_id, received, path, instance_id, reg_id, user_agent, \
         call_id, cseq, q, expires_at, updated_at"
    };
}
macro_rules! cdr_cols {
    () => {
        "id, call_id, account_id, caller, callee, caller_name, source, invite_at, ring_at, \
         answer_at, end_at, ring_ms, talk_ms, disposition, hangup_code, hangup_reason, \
         hangup_side, route_id, node, rtp_sent, rtp_received, rtp_lost, jitter_ms, mos, \
         rtpmanager, created_at, route, caller_user, callee_user, sip_call_id"
    };
}

/// Appends a [`CdrFilter`](crate::CdrFilter)'s conditions, newest first,
/// and its limit to a `QueryBuilder` whose SQL ends in a `WHERE` clause
/// (the same SQL and binds on both backends; a macro because sqlx's bind
/// bounds differ per database).
macro_rules! push_cdr_filter {
    ($qb:ident, $filter:expr) => {{
        let filter = $filter;
        let qb = &mut $qb;
        if let Some(account_id) = filter.account_id {
            qb.push(" AND account_id = ").push_bind(account_id);
        }
        if let Some(from) = filter.from_ms {
            qb.push(" AND invite_at >= ").push_bind(from);
        }
        if let Some(to) = filter.to_ms {
            qb.push(" AND invite_at < ").push_bind(to);
        }
        if let Some(caller) = &filter.caller {
            qb.push(" AND caller = ").push_bind(caller.clone());
        }
        if let Some(callee) = &filter.callee {
            qb.push(" AND callee = ").push_bind(callee.clone());
        }
        if let Some(disposition) = &filter.disposition {
            qb.push(" AND disposition = ")
                .push_bind(disposition.clone());
        }
        if let Some(sip_call_id) = &filter.sip_call_id {
            qb.push(" AND sip_call_id = ")
                .push_bind(sip_call_id.clone());
        }
        if let Some(cursor) = filter.cursor {
            qb.push(" AND id < ").push_bind(cursor);
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.effective_limit()));
    }};
}

/// Appends a [`UserFilter`](crate::UserFilter)'s conditions (not its page)
/// to a `QueryBuilder` whose SQL ends in a `WHERE` clause; `$like` is the
/// case-insensitive `LIKE` of the database.
macro_rules! push_user_filter {
    ($qb:ident, $filter:expr, $like:literal) => {{
        let filter = $filter;
        let qb = &mut $qb;
        if let Some(account_id) = filter.account_id {
            qb.push(" AND account_id = ").push_bind(account_id);
        }
        if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let p = crate::model::like_pattern(q);
            qb.push(concat!(" AND (username ", $like, " "))
                .push_bind(p.clone())
                .push(concat!(
                    " ESCAPE '\\' OR COALESCE(extension, '') ",
                    $like,
                    " "
                ))
                .push_bind(p.clone())
                .push(concat!(
                    " ESCAPE '\\' OR COALESCE(display_name, '') ",
                    $like,
                    " "
                ))
                .push_bind(p)
                .push(" ESCAPE '\\')");
        }
    }};
}

/// The per-minute aggregate of CDRs behind
/// [`Store::call_minutes`](crate::Store::call_minutes): binds are the
/// window's start (twice) and end.
macro_rules! call_minutes_sql {
    ($p1:literal, $p2:literal, $p3:literal) => {
        concat!(
            "SELECT (invite_at - ",
            $p1,
            ") / 60000 AS m, COUNT(*) AS attempted, \
             SUM(CASE WHEN answer_at IS NOT NULL OR disposition = 'answered' THEN 1 ELSE 0 END) \
             AS answered, \
             COALESCE(SUM(CASE WHEN mos > 0 THEN mos END), 0.0) AS mos_sum, \
             COUNT(CASE WHEN mos > 0 THEN 1 END) AS mos_n \
             FROM cdrs WHERE invite_at >= ",
            $p2,
            " AND invite_at < ",
            $p3,
            " GROUP BY m ORDER BY m"
        )
    };
}

pub(crate) use {
    account_cols, call_minutes_sql, cdr_cols, push_cdr_filter, push_user_filter, registration_cols,
    user_cols,
};
