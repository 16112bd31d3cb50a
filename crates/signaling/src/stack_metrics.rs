//! `/metrics` families for the bounds of the SIP stack: TCP connections
//! (caps, deadlines, connects), WebSocket upgrades, closed flows reported
//! to the registrar, the UDP send queue, the per-source rate
//! limit, the transaction cap, stateless replies and the merge guard.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use switchboard_sip_stack::endpoint::Endpoint;

use crate::metrics::metric;

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// One counter family with a single label.
pub(crate) fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (value, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
    }
}

/// Appends the stack's bound families for `ep`.
pub(crate) fn render(out: &mut String, ep: &Endpoint) {
    let e = &ep.stats;
    labelled(
        out,
        "switchboard_sip_rate_limited_total",
        "Requests over their source's rate (SIP_RATE_PER_IP): answered 503, or dropped beyond twice the rate.",
        "action",
        &[
            ("503", load(&e.rate_refused)),
            ("drop", load(&e.rate_dropped)),
        ],
    );
    if let Some((sources, evictions)) = ep.rate_sources() {
        metric(
            out,
            "switchboard_sip_rate_limit_sources",
            "gauge",
            "Sources the rate limiter tracks.",
            sources,
        );
        metric(
            out,
            "switchboard_sip_rate_limit_evictions_total",
            "counter",
            "Active sources forgotten because the rate limiter's table was full.",
            evictions,
        );
    }
    metric(
        out,
        "switchboard_transactions_server_live",
        "gauge",
        "Live SIP server transactions, as MAX_TRANSACTIONS counts them.",
        ep.layer.server_live(),
    );
    metric(
        out,
        "switchboard_sip_overload_refused_total",
        "counter",
        "Requests answered 503 because MAX_TRANSACTIONS was reached.",
        load(&e.overload_refused),
    );
    metric(
        out,
        "switchboard_sip_screened_total",
        "counter",
        "Requests answered or dropped before a transaction existed (stateless).",
        load(&e.screened),
    );
    metric(
        out,
        "switchboard_sip_stateless_acks_total",
        "counter",
        "ACKs for stateless non-2xx replies, absorbed.",
        load(&e.stateless_acks),
    );
    let (merge_entries, merge_evictions) = ep.merge_guard();
    metric(
        out,
        "switchboard_sip_merged_rejected_total",
        "counter",
        "INVITEs answered 482 as merged requests.",
        load(&e.merged_rejected),
    );
    metric(
        out,
        "switchboard_sip_merge_guard_entries",
        "gauge",
        "INVITEs the merged-request guard remembers.",
        merge_entries,
    );
    metric(
        out,
        "switchboard_sip_merge_guard_evictions_total",
        "counter",
        "INVITEs the merged-request guard forgot early because it was full.",
        merge_evictions,
    );
    let Some(t) = ep.wire.transports() else {
        return;
    };
    let s = &t.stats;
    metric(
        out,
        "switchboard_tcp_connections_total",
        "counter",
        "SIP stream connections (TCP and TLS) accepted or opened.",
        load(&s.connections),
    );
    labelled(
        out,
        "switchboard_tcp_refused_total",
        "Inbound SIP TCP and TLS connections refused at a cap (TCP_MAX_CONNECTIONS, TCP_MAX_PER_IP; TLS counts with TCP).",
        "cap",
        &[
            ("global", load(&s.refused_global)),
            ("per_ip", load(&s.refused_per_source)),
        ],
    );
    labelled(
        out,
        "switchboard_tcp_closed_total",
        "SIP TCP and TLS connections closed by the server: a message too slow (TCP_MESSAGE_TIMEOUT), no SIP from a new connection (TCP_IDLE_NEW), idle, or unframeable bytes.",
        "reason",
        &[
            ("slow_message", load(&s.closed_slow)),
            ("idle_new", load(&s.closed_idle_new)),
            ("idle", load(&s.closed_idle)),
            ("framing_error", load(&s.framing_errors)),
        ],
    );
    metric(
        out,
        "switchboard_tls_messages_total",
        "counter",
        "SIP messages received over TLS.",
        load(&s.tls_in),
    );
    labelled(
        out,
        "switchboard_tls_handshake_failures_total",
        "TLS handshakes (inbound and outbound) that failed (a certificate refused, not TLS) or did not finish within TLS_HANDSHAKE_TIMEOUT.",
        "reason",
        &[
            ("error", load(&s.tls_handshake_failures)),
            ("timeout", load(&s.tls_handshake_timeouts)),
        ],
    );
    labelled(
        out,
        "switchboard_ws_messages_total",
        "SIP messages received over WebSocket (RFC 7118), plain and secure.",
        "transport",
        &[("ws", load(&s.ws_in)), ("wss", load(&s.wss_in))],
    );
    labelled(
        out,
        "switchboard_ws_connections_total",
        "Connections upgraded to SIP over WebSocket (they count in the switchboard_tcp_* connection series and caps too).",
        "transport",
        &[("ws", load(&s.ws_upgraded)), ("wss", load(&s.wss_upgraded))],
    );
    labelled(
        out,
        "switchboard_ws_handshakes_refused_total",
        "WebSocket upgrades refused: a foreign Origin (403, WS_ALLOWED_ORIGINS), no subprotocol sip (400), not a WebSocket upgrade, or not finished within TLS_HANDSHAKE_TIMEOUT.",
        "reason",
        &[
            ("origin", load(&s.ws_refused_origin)),
            ("subprotocol", load(&s.ws_refused_subprotocol)),
            ("not_websocket", load(&s.ws_refused_other)),
            ("timeout", load(&s.ws_upgrade_timeouts)),
        ],
    );
    metric(
        out,
        "switchboard_ws_oversize_total",
        "counter",
        "WebSocket connections closed for a message or frame larger than 65,535 bytes.",
        load(&s.ws_oversize),
    );
    metric(
        out,
        "switchboard_ws_unreachable_total",
        "counter",
        "Messages dropped because the WebSocket connection of their flow was gone (no WebSocket is ever opened to a phone).",
        load(&s.ws_unreachable),
    );
    metric(
        out,
        "switchboard_tcp_pings_total",
        "counter",
        "RFC 5626 keep-alive pings answered with a pong.",
        load(&s.pings),
    );
    metric(
        out,
        "switchboard_tcp_connects_pending",
        "gauge",
        "Outbound SIP TCP connects in progress.",
        t.connects_pending(),
    );
    labelled(
        out,
        "switchboard_tcp_connect_failures_total",
        "Outbound SIP TCP and TLS connects that failed (refused, unreachable, TLS handshake failed) or timed out (TCP_CONNECT_TIMEOUT).",
        "reason",
        &[
            (
                "error",
                load(&s.connect_failures).saturating_sub(load(&s.connect_timeouts)),
            ),
            ("timeout", load(&s.connect_timeouts)),
        ],
    );
    metric(
        out,
        "switchboard_tcp_connect_queue_drops_total",
        "counter",
        "Messages dropped because too many connects were in progress or a connect's queue was full.",
        load(&s.connect_queue_drops),
    );
    labelled(
        out,
        "switchboard_flow_close_reports_total",
        "Closed connections that carried SIP, reported to the registrar (UNREGISTER_ON_CLOSE), or dropped because its queue was full.",
        "result",
        &[
            ("reported", load(&s.close_reports)),
            ("dropped", load(&s.close_reports_dropped)),
        ],
    );
    metric(
        out,
        "switchboard_udp_send_queued_total",
        "counter",
        "UDP datagrams queued because the socket buffer was full.",
        load(&s.udp_queued),
    );
    metric(
        out,
        "switchboard_udp_send_queue_drops_total",
        "counter",
        "UDP datagrams dropped because the send queue was full too.",
        load(&s.udp_queue_drops),
    );
}
