//! The registrar (RFC 3261 §10.3): REGISTER in, one response out.
//!
//! [`Registrar::handle`] is synchronous and touches only memory (the
//! directory, the location table, the authenticator), so the SIP receive
//! path answers a REGISTER without awaiting anything. Persistence happens
//! behind it in the write-behind flusher.

use std::sync::Arc;
use std::time::Instant;

use switchboard_sip::message::{Contacts, NameAddr, Request, Uri};
use switchboard_sip::response::response;
use switchboard_sip_stack::target::Target;

use crate::auth::{Authenticator, NonceUse, Outcome, Realm};
use crate::directory::Directory;
use crate::location::{Change, Location, NewBinding, Update, UpdateError};

/// Extensions this registrar implements, for `Supported` and the `Require`
/// check (RFC 3261 §8.2.2.3). `path`: Path headers are stored with the
/// binding and echoed (RFC 3327). `outbound`: `+sip.instance`/`reg-id`
/// identify bindings (RFC 5626 §6); flow keepalives (CRLF) are answered by
/// the transport.
pub const SUPPORTED: &[&str] = &["path", "outbound"];

/// Registration intervals, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    pub default: u32,
    pub min: u32,
    pub max: u32,
}

/// What to do with a REGISTER.
#[derive(Debug)]
pub enum Reply {
    /// Send this response (status code for metrics, bytes for the wire).
    Respond(u16, Vec<u8>),
    /// Send nothing (blocked source with silent policy).
    Drop,
    /// Bindings changed: send this 200 once the change is where the other
    /// replicas look (at once on a node of its own).
    Changed(u16, Vec<u8>, Box<BindingChange>),
}

/// A REGISTER's change to an AOR, as the other replicas must see it.
#[derive(Debug, Clone)]
pub struct BindingChange {
    pub aor: String,
    pub user_id: i64,
    pub account_id: i64,
    /// The AOR's bindings on this node after the change.
    pub bindings: Vec<crate::location::Binding>,
    /// Contacts the change removed.
    pub removed: Vec<String>,
    /// Contacts the REGISTER bound, and whether each is new.
    pub bound: Vec<(Box<str>, bool)>,
}

#[derive(Clone)]
pub struct Registrar {
    pub directory: Arc<Directory>,
    pub location: Arc<Location>,
    pub auth: Arc<Authenticator>,
    pub intervals: Intervals,
}

/// Wall-clock "now" in the two forms the registrar needs.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix_ms: i64,
}

impl Now {
    pub fn current() -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self {
            instant: Instant::now(),
            unix_ms,
        }
    }

    pub fn unix_secs(&self) -> u64 {
        (self.unix_ms / 1000).max(0) as u64
    }
}

fn simple(req: &Request, code: u16, reason: &str) -> Reply {
    Reply::Respond(code, response(req, code, reason).build())
}

/// A REGISTER whose credentials checked out: who sent it, for which
/// account, with which nonce and count.
pub struct Authorized {
    pub user: Arc<crate::directory::UserEntry>,
    pub account: Arc<crate::directory::AccountEntry>,
    pub nonce: NonceUse,
}

/// A REGISTER's change worked out but not made ([`Registrar::plan`]): the
/// location update it asks for, and what it would change.
pub struct Planned {
    update: Update,
    /// The change the update makes to the AOR's record as it stands.
    pub change: Box<BindingChange>,
}

impl Registrar {
    /// Handles one REGISTER.
    pub fn handle(&self, req: &Request, source: &Target, now: Now) -> Reply {
        match self.authorize(req, source, now) {
            Ok(who) => self.apply(req, source, now, &who),
            Err(reply) => reply,
        }
    }

    /// A `401` with a fresh (`stale=true`) challenge: the answer to a
    /// nonce count another replica already saw.
    pub fn stale(&self, req: &Request, source: &Target, now: Now, who: &Authorized) -> Reply {
        let mut b = response(req, 401, "Unauthorized");
        for c in self.auth.challenges(
            &who.account.realm,
            true,
            now.unix_secs(),
            source.remote.ip(),
        ) {
            b = b.header("WWW-Authenticate", &c);
        }
        Reply::Respond(401, b.build())
    }

    /// The first half of [`Registrar::handle`]: extensions, domain and
    /// digest; `Err` is the reply that ends the request.
    pub fn authorize(&self, req: &Request, source: &Target, now: Now) -> Result<Authorized, Reply> {
        if let Some(bad) = unsupported_required(req) {
            return Err(Reply::Respond(
                420,
                response(req, 420, "Bad Extension")
                    .header("Unsupported", &bad)
                    .build(),
            ));
        }
        let to_uri = match Uri::parse(&req.to.uri) {
            Ok(u) if u.scheme == "sip" || u.scheme == "sips" => u,
            _ => return Err(simple(req, 400, "Invalid To URI")),
        };
        let Some(account) = self.directory.account_for_domain(&to_uri.host) else {
            return Err(simple(req, 404, "Domain Not Served"));
        };
        let (user, nonce) = match self.auth.authenticate_nonce(
            req,
            Realm::Www,
            &account,
            &self.directory,
            source.remote.ip(),
            now,
        ) {
            Outcome::Ok(ok) => ok,
            Outcome::Challenge { stale } => {
                let mut b = response(req, 401, "Unauthorized");
                for c in
                    self.auth
                        .challenges(&account.realm, stale, now.unix_secs(), source.remote.ip())
                {
                    b = b.header("WWW-Authenticate", &c);
                }
                return Err(Reply::Respond(401, b.build()));
            }
            Outcome::Forbidden(reason) => return Err(simple(req, 403, reason)),
            Outcome::Drop => return Err(Reply::Drop),
        };
        Ok(Authorized {
            user,
            account,
            nonce,
        })
    }

    /// The second half of [`Registrar::handle`]: the bindings (§10.3 steps
    /// 5–8) for an authorized REGISTER.
    pub fn apply(&self, req: &Request, source: &Target, now: Now, who: &Authorized) -> Reply {
        match self.update(req, source, who) {
            Ok(update) => self.commit_update(req, now, who, &update),
            Err(reply) => reply,
        }
    }

    /// What [`Registrar::apply`] would change, without changing it, for a
    /// cluster that shares a change before committing it: the change to
    /// share (made by [`Registrar::commit`]), `None` for a REGISTER that
    /// changes nothing (a fetch), or the reply that ends the request (which
    /// `apply` would give too).
    ///
    /// # Errors
    /// The reply that ends the request.
    pub fn plan(
        &self,
        req: &Request,
        source: &Target,
        now: Now,
        who: &Authorized,
    ) -> Result<Option<Planned>, Reply> {
        let update = self.update(req, source, who)?;
        if matches!(update.change, Change::Fetch) {
            return Ok(None);
        }
        let applied = match self.location.plan(&update, now.unix_ms) {
            Ok(a) => a,
            Err(UpdateError::OutOfOrder) => return Err(simple(req, 400, "Out Of Order CSeq")),
        };
        let change = binding_change(&update, who, applied);
        Ok(Some(Planned { update, change }))
    }

    /// Makes a [`Registrar::plan`]ned change: the location rules run again
    /// on the AOR's record as it is now (another REGISTER of the AOR may
    /// have come in since the plan), and the reply is `apply`'s.
    pub fn commit(&self, req: &Request, now: Now, who: &Authorized, planned: &Planned) -> Reply {
        self.commit_update(req, now, who, &planned.update)
    }

    /// A REGISTER's location update, Path included (§10.3 steps 5–7), or
    /// the reply that ends it.
    fn update(&self, req: &Request, source: &Target, who: &Authorized) -> Result<Update, Reply> {
        let (user, account) = (&who.user, &who.account);
        let Ok(to_uri) = Uri::parse(&req.to.uri) else {
            return Err(simple(req, 400, "Invalid To URI"));
        };

        // §10.3 step 5: the authenticated user may register only its own
        // AOR, named by username or by extension.
        let to_user = to_uri.user.as_deref().unwrap_or("");
        if to_user != &*user.username && user.extension.as_deref() != Some(to_user) {
            return Err(simple(req, 403, "Not Allowed To Register This AOR"));
        }
        let aor = format!(
            "sip:{}@{}",
            user.username,
            account.realm.to_ascii_lowercase()
        );

        let change = match req.contacts() {
            Err(_) => return Err(simple(req, 400, "Invalid Contact")),
            Ok(Contacts::Star) => {
                let only_star = req.header_values("Contact").len() == 1;
                if req.expires() != Some(0) || !only_star {
                    return Err(simple(req, 400, "Invalid Contact *"));
                }
                Change::RemoveAll
            }
            Ok(Contacts::List(list)) if list.is_empty() => Change::Fetch,
            Ok(Contacts::List(list)) => {
                let mut new = Vec::with_capacity(list.len());
                for c in &list {
                    match self.binding(req, c) {
                        Ok(b) => new.push(b),
                        Err(reply) => return Err(reply),
                    }
                }
                Change::Set(new)
            }
        };
        let path = req.header_values("Path");
        Ok(Update {
            aor,
            user_id: user.id,
            account_id: account.id,
            call_id: req.call_id.as_str().into(),
            cseq: req.cseq,
            received: *source,
            user_agent: req
                .header("User-Agent")
                .map(|ua| self.location.intern_user_agent(ua)),
            path: (!path.is_empty()).then(|| path.join(", ").into_boxed_str()),
            change,
        })
    }

    /// Applies `update` to the location table and builds the 200 (§10.3
    /// step 8), or the reply that refuses it.
    fn commit_update(&self, req: &Request, now: Now, who: &Authorized, update: &Update) -> Reply {
        let fetch = matches!(update.change, Change::Fetch);
        let applied = match self.location.apply(update, now.unix_ms) {
            Ok(a) => a,
            Err(UpdateError::OutOfOrder) => return simple(req, 400, "Out Of Order CSeq"),
        };
        let bindings = &applied.bindings;
        let mut b = response(req, 200, "OK");
        for binding in bindings {
            let mut value = format!(
                "<{}>;expires={}",
                binding.contact,
                binding.expires_in(now.unix_ms)
            );
            if let Some(inst) = &binding.instance {
                value.push_str(";+sip.instance=");
                value.push_str(inst);
            }
            if let Some(r) = binding.reg_id {
                value.push_str(&format!(";reg-id={r}"));
            }
            b = b.header("Contact", &value);
        }
        if let Some(p) = &update.path {
            b = b.header("Path", p);
        }
        // RFC 5626 §6: a registration that asked for a flow (reg-id and
        // +sip.instance) is told the registrar keeps it
        if bindings
            .iter()
            .any(|b| b.reg_id.is_some() && b.instance.is_some())
        {
            b = b.header("Require", "outbound");
        }
        b = b
            .header("Date", &httpdate(now.unix_ms))
            .header("Supported", &SUPPORTED.join(", "));
        if fetch {
            return Reply::Respond(200, b.build());
        }
        let bytes = b.build();
        Reply::Changed(200, bytes, binding_change(update, who, applied))
    }

    /// One Contact of a REGISTER → the binding asked for, with its interval
    /// decided (§10.3 step 7), or the error reply that aborts the request.
    fn binding(&self, req: &Request, c: &NameAddr) -> Result<NewBinding, Reply> {
        let asked = match c.param("expires") {
            Some(Some(v)) => v.trim().parse::<u32>().ok(),
            _ => None,
        }
        .or_else(|| req.expires())
        .unwrap_or(self.intervals.default);
        if asked != 0 && asked < self.intervals.min {
            return Err(Reply::Respond(
                423,
                response(req, 423, "Interval Too Brief")
                    .header("Min-Expires", &self.intervals.min.to_string())
                    .build(),
            ));
        }
        let q = match c.param("q") {
            Some(Some(v)) => match v.parse::<f32>() {
                Ok(q) if (0.0..=1.0).contains(&q) => Some(q),
                _ => return Err(simple(req, 400, "Invalid q Value")),
            },
            _ => None,
        };
        Ok(NewBinding {
            contact: c.uri.as_str().into(),
            expires: asked.min(self.intervals.max),
            q,
            instance: c.param("+sip.instance").flatten().map(Box::from),
            reg_id: c.param("reg-id").flatten().and_then(|v| v.parse().ok()),
        })
    }
}

/// The change an applied (or planned) update makes, as the other replicas
/// must see it.
fn binding_change(
    update: &Update,
    who: &Authorized,
    applied: crate::location::Applied,
) -> Box<BindingChange> {
    Box::new(BindingChange {
        aor: update.aor.clone(),
        user_id: who.user.id,
        account_id: who.account.id,
        bindings: applied.bindings,
        removed: applied.removed,
        bound: applied.bound,
    })
}

/// The first option tag in `Require` we do not support, if any.
pub fn unsupported_required(req: &Request) -> Option<String> {
    let unsupported: Vec<&str> = req
        .header_values("Require")
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    (!unsupported.is_empty()).then(|| unsupported.join(", "))
}

/// RFC 1123 date for the `Date` header (RFC 3261 §20.17), which some phones
/// use to set their clock.
pub fn httpdate(unix_ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(month - 1) as usize],
        year,
        h,
        m,
        s
    )
}

#[cfg(test)]
mod tests {
    use super::httpdate;

    #[test]
    fn dates_match_rfc1123() {
        assert_eq!(httpdate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(httpdate(784_111_777_000), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(httpdate(1_795_392_000_000), "Mon, 23 Nov 2026 00:00:00 GMT");
    }
}
