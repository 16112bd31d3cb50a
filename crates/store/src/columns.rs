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

pub(crate) use {account_cols, cdr_cols, registration_cols, user_cols};
