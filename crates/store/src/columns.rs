//! Column lists shared by the backends' SQL, as macros expanding to string
//! literals so `concat!` can build whole statements at compile time. Each
//! names every field of its record in `model` (`sqlx::FromRow` maps them
//! by name).

macro_rules! account_cols {
    () => {
        "id, name, domain, max_concurrent_calls, created_at"
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

pub(crate) use {account_cols, cdr_cols, push_cdr_filter, registration_cols, user_cols};
