//! Outbound registration of trunks with their providers.

use std::sync::Arc;

use bytes::Bytes;
use switchboard_sip_stack::dialog::{advertised, host_port};
use switchboard_sip_stack::target::{Target, TransportKind};
use tracing::warn;

use super::{Calls, answer_challenge};
use crate::registrar::Now;

impl Calls {
    /// Starts what `trunk` needs while it is configured: lookups of its
    /// host name (at once unless `looked_up`, then every
    /// [`crate::trunks::RESOLVE_INTERVAL`]) and, with `register`, its
    /// outbound registration (after the first lookup).
    pub fn start_trunk_tasks(
        self: &Arc<Self>,
        trunk: Arc<crate::trunks::Trunk>,
        shutdown: tokio_util::sync::CancellationToken,
        looked_up: bool,
    ) {
        let calls = Arc::downgrade(self);
        tokio::spawn(async move {
            if !looked_up {
                trunk.resolve().await;
            }
            if let Some(c) = calls.upgrade() {
                c.start_trunk_registration(Arc::clone(&trunk), shutdown.clone());
            }
            if !trunk.is_name() {
                return;
            }
            loop {
                tokio::select! {
                    () = tokio::time::sleep(crate::trunks::RESOLVE_INTERVAL) => {}
                    () = trunk.stop.cancelled() => return,
                    () = shutdown.cancelled() => return,
                }
                trunk.resolve().await;
            }
        });
    }

    /// Keeps `trunk` registered with its provider while it is configured
    /// with `register` (refresh at 80 % of the granted interval, back-off
    /// after failures); its status is in [`crate::trunks::Trunk::status`].
    fn start_trunk_registration(
        self: &Arc<Self>,
        trunk: Arc<crate::trunks::Trunk>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        if !trunk.config.register {
            return;
        }
        let calls = Arc::downgrade(self);
        tokio::spawn(async move {
            let call_id = switchboard_sip::request::new_call_id(None);
            let mut cseq = 1u32;
            loop {
                let Some(c) = calls.upgrade() else {
                    return;
                };
                let wait = match c.register_trunk(&trunk, &call_id, &mut cseq).await {
                    Ok(granted) => {
                        if let Ok(mut st) = trunk.status.lock() {
                            st.registered = true;
                            st.failures = 0;
                            st.last_error = None;
                            st.expires_at =
                                Some(Now::current().unix_ms + i64::from(granted) * 1000);
                        }
                        std::time::Duration::from_secs(u64::from(granted.max(10)) * 4 / 5)
                    }
                    Err((code, why)) => {
                        let failures = trunk.status.lock().map_or(1, |mut st| {
                            st.registered = false;
                            st.failures = st.failures.saturating_add(1);
                            st.last_code = code.or(st.last_code);
                            st.last_error = Some(why.clone());
                            st.failures
                        });
                        warn!(trunk = %trunk.config.name, %why, "trunk registration failed");
                        // the provider may have moved: look its name up again
                        trunk.resolve().await;
                        crate::trunks::backoff(failures.saturating_sub(1))
                    }
                };
                drop(c);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = trunk.stop.cancelled() => return,
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }

    /// One REGISTER exchange with a trunk (answering one challenge);
    /// returns the granted interval.
    async fn register_trunk(
        &self,
        trunk: &crate::trunks::Trunk,
        call_id: &str,
        cseq: &mut u32,
    ) -> Result<u32, (Option<u16>, String)> {
        use switchboard_sip::message::{Message, parse};
        use switchboard_sip::request::{RequestBuilder, new_branch};
        let ep = self
            .endpoint()
            .ok_or((None, "no SIP endpoint".to_owned()))?;
        let (remote, local) = trunk
            .pick(|a| self.local_for(a, trunk.transport))
            .ok_or_else(|| {
                let why = match trunk.status().resolve_error {
                    Some(e) if trunk.addrs().is_empty() => e,
                    _ => "no SIP socket of the trunk's address family".to_owned(),
                };
                (None, why)
            })?;
        let target = Target {
            transport: trunk.transport,
            local,
            remote,
            conn: None,
        };
        let cfg = &trunk.config;
        let user = cfg.username.clone().unwrap_or_default();
        let domain = cfg.domain();
        let uri = format!("sip:{domain}");
        let aor = format!("<sip:{user}@{domain}>");
        // over TLS the provider must call back over TLS
        let params = match trunk.transport {
            TransportKind::Tls => ";transport=tls",
            _ => "",
        };
        let contact = format!("<sip:{user}@{}{params}>", host_port(&advertised(&target)));
        let from_tag = format!("{:x}", rand::random::<u64>());
        let mut auth: Option<(&'static str, String)> = None;
        for _attempt in 0..2 {
            let branch = new_branch();
            let mut b = RequestBuilder::new("REGISTER", &uri)
                .via(
                    target.transport.via_token(),
                    &host_port(&advertised(&target)),
                    &branch,
                )
                .header("Max-Forwards", "70")
                .header("From", &format!("{aor};tag={from_tag}"))
                .header("To", &aor)
                .header("Call-ID", call_id)
                .header("CSeq", &format!("{cseq} REGISTER"))
                .header("Contact", &contact)
                .header("Expires", &cfg.expires.to_string())
                .header("User-Agent", "switchboard");
            if let Some((name, value)) = &auth {
                b = b.header(name, value);
            }
            *cseq += 1;
            let key =
                switchboard_sip_stack::transaction::TransactionKey::client(&branch, "REGISTER");
            let mut tx = ep.send_request(key, false, target, Bytes::from(b.build()));
            self.metrics.requests_out.inc("REGISTER");
            let (code, bytes) = loop {
                match tx.next_event().await {
                    Some(switchboard_sip_stack::transaction::ClientEvent::Response(
                        code,
                        bytes,
                    )) if code >= 200 => {
                        break (code, bytes);
                    }
                    Some(switchboard_sip_stack::transaction::ClientEvent::Response(..)) => {}
                    Some(_) | None => return Err((None, "no answer from the trunk".to_owned())),
                }
            };
            if let Ok(mut st) = trunk.status.lock() {
                st.last_code = Some(code);
            }
            let Ok(Message::Response(resp)) = parse(&bytes) else {
                return Err((Some(code), "unparsable response".to_owned()));
            };
            match code {
                200..=299 => {
                    let granted = resp
                        .header_values("Contact")
                        .iter()
                        .find_map(|c| {
                            c.split(';')
                                .find_map(|p| p.trim().strip_prefix("expires="))
                                .and_then(|v| v.trim().parse::<u32>().ok())
                        })
                        .or_else(|| resp.header("Expires").and_then(|v| v.trim().parse().ok()))
                        .unwrap_or(cfg.expires);
                    return Ok(granted);
                }
                401 | 407 if auth.is_none() => {
                    let password = cfg.password.as_deref().unwrap_or_default();
                    match answer_challenge(&resp, "REGISTER", &uri, &user, password) {
                        Some(answer) => auth = Some(answer),
                        None => {
                            return Err((
                                Some(code),
                                "challenge without a usable digest".to_owned(),
                            ));
                        }
                    }
                }
                _ => return Err((Some(code), format!("{code} {}", resp.reason))),
            }
        }
        Err((None, "credentials refused".to_owned()))
    }
}
