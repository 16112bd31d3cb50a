//! Which callers a route serves: local users, or calls from trunks.
//!
//! A call from a trunk is recognised by the address it comes from, which
//! anyone can forge over UDP, so trunk traffic has a context of its own:
//!
//! * a route without `from` serves local users (authenticated by digest,
//!   and the API's click-to-call) and never a call from a trunk;
//! * `"from": "trunk"` serves calls from any trunk, `"from":
//!   "trunk/<name>"` from that trunk, and never a local user;
//! * a route for trunks that dials out to a trunk (a `gateway/...` target)
//!   must say `"allow_trunk_to_trunk": true`, or the dialplan is refused:
//!   otherwise anyone forging a trunk's address could make calls through
//!   another trunk at our expense.

use super::{Action, DialTarget, DialplanError, RouteFile, err};

/// Where a call comes from, as the dialplan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A local user (authenticated by digest, or the API's click-to-call).
    User,
    /// A trunk, by name.
    Trunk(&'a str),
}

/// The callers a route serves (its `from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteFrom {
    /// No `from`: local users only.
    Users,
    /// `"trunk"`: calls from any trunk.
    AnyTrunk,
    /// `"trunk/<name>"`: calls from that trunk.
    Trunk(String),
}

impl RouteFrom {
    fn parse(s: Option<&str>) -> Result<Self, String> {
        match s {
            None => Ok(Self::Users),
            Some("trunk") => Ok(Self::AnyTrunk),
            Some(other) => match other.strip_prefix("trunk/") {
                Some(name)
                    if !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                {
                    Ok(Self::Trunk(name.to_owned()))
                }
                _ => Err(format!(
                    "unknown caller {other:?} (\"trunk\" or \"trunk/<name>\"; \
                     leave \"from\" out for local users)"
                )),
            },
        }
    }

    /// True when a call from `origin` may take the route.
    pub fn serves(&self, origin: Origin<'_>) -> bool {
        match (self, origin) {
            (Self::Users, Origin::User) => true,
            (Self::AnyTrunk, Origin::Trunk(_)) => true,
            (Self::Trunk(name), Origin::Trunk(t)) => name == t,
            _ => false,
        }
    }

    fn is_trunk(&self) -> bool {
        !matches!(self, Self::Users)
    }
}

/// The route's `from`, checked against `allow_trunk_to_trunk` and what
/// its actions dial.
pub(super) fn check(
    r: &RouteFile,
    actions: &[Action],
    here: &str,
) -> Result<RouteFrom, DialplanError> {
    let from = RouteFrom::parse(r.from.as_deref()).map_err(|e| err(format!("{here}.from"), e))?;
    if r.allow_trunk_to_trunk && !from.is_trunk() {
        return Err(err(
            format!("{here}.allow_trunk_to_trunk"),
            "only for routes with \"from\": \"trunk\" or \"trunk/<name>\" \
             (routes without \"from\" serve local users)",
        ));
    }
    if from.is_trunk() && !r.allow_trunk_to_trunk {
        let gateway = actions.iter().enumerate().find_map(|(j, a)| match a {
            Action::Dial { targets, .. } => targets.iter().find_map(|t| match t {
                DialTarget::Gateway(g) => Some((j, g)),
                _ => None,
            }),
            _ => None,
        });
        if let Some((j, g)) = gateway {
            return Err(err(
                format!("{here}.allow_trunk_to_trunk"),
                format!(
                    "actions[{j}] dials gateway/{g} for calls from a trunk: a caller forging \
                     a trunk's address could call out through another trunk; set \
                     \"allow_trunk_to_trunk\": true only if that is intended"
                ),
            ));
        }
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use crate::dialplan::Dialplan;

    use super::*;

    const PLAN: &str = r#"{"routes":[
        {"id":"out","pattern":"0*","priority":10,
         "actions":[{"type":"dial","params":{"target":"gateway/provider"}}]},
        {"id":"users","pattern":"*","priority":100,
         "actions":[{"type":"dial","params":{"target":"user/${destination}"}}]},
        {"id":"did","from":"trunk/provider","pattern":"4930123","priority":10,
         "actions":[{"type":"dial","params":{"target":"user/1001"}}]},
        {"id":"any-trunk","from":"trunk","pattern":"49*","priority":20,
         "actions":[{"type":"hangup","params":{"reason":"not_found"}}]},
        {"id":"transit","from":"trunk/partner","pattern":"00*","priority":5,
         "allow_trunk_to_trunk":true,
         "actions":[{"type":"dial","params":{"targets":["user/1001","gateway/provider"]}}]}]}"#;

    #[test]
    fn trunk_calls_take_only_trunk_routes() {
        let d = Dialplan::parse(PLAN).unwrap();
        let id =
            |dest: &str, origin: Origin<'_>| d.route_for(dest, 1, origin).map(|r| r.id.clone());
        // (destination, origin, route)
        let table: &[(&str, Origin<'_>, Option<&str>)] = &[
            ("0301234", Origin::User, Some("out")),
            ("1001", Origin::User, Some("users")),
            ("4930123", Origin::User, Some("users")),
            // a forged "provider" cannot reach the users' outbound route
            ("0301234", Origin::Trunk("provider"), None),
            ("1001", Origin::Trunk("provider"), None),
            ("4930123", Origin::Trunk("provider"), Some("did")),
            ("4930123", Origin::Trunk("other"), Some("any-trunk")),
            ("4999", Origin::Trunk("provider"), Some("any-trunk")),
            ("0049301", Origin::Trunk("partner"), Some("transit")),
            ("0049301", Origin::Trunk("provider"), None),
            ("0049301", Origin::User, Some("out")),
        ];
        for (dest, origin, want) in table {
            assert_eq!(
                id(dest, *origin).as_deref(),
                *want,
                "{dest} from {origin:?}"
            );
        }
        // the plain lookup is the users' one
        assert_eq!(d.route("4930123", 1).unwrap().id, "users");
    }

    #[test]
    fn bad_origins_name_the_route_and_field() {
        let route = |extra: &str, target: &str| {
            format!(
                r#"{{"routes":[{{"id":"r1","pattern":"1*",{extra}
                "actions":[{{"type":"dial","params":{{"targets":["user/1","{target}"]}}}}]}}]}}"#
            )
        };
        let at = "routes[0] (id \"r1\")";
        for (extra, target, path, reason) in [
            (
                r#""from":"trunk","#,
                "gateway/p",
                "allow_trunk_to_trunk",
                "actions[0] dials gateway/p",
            ),
            (
                r#""from":"trunk/a","#,
                "gateway/${destination}",
                "allow_trunk_to_trunk",
                "dials gateway/",
            ),
            (
                r#""allow_trunk_to_trunk":true,"#,
                "user/2",
                "allow_trunk_to_trunk",
                "only for routes with",
            ),
            (
                r#""from":"users","#,
                "user/2",
                "from",
                "unknown caller \"users\"",
            ),
            (r#""from":"trunk/","#, "user/2", "from", "unknown caller"),
            (r#""from":"trunk/a b","#, "user/2", "from", "unknown caller"),
        ] {
            let text = route(extra, target);
            let e = Dialplan::parse(&text).expect_err(&text);
            assert_eq!(e.path, format!("{at}.{path}"), "{extra}: {e}");
            assert!(e.reason.contains(reason), "{extra}: {e}");
        }
        // allowed: a trunk route dialling users or SIP URIs, a users' route
        // dialling a gateway, and an explicit trunk-to-trunk route
        for (extra, target) in [
            (r#""from":"trunk","#, "sip:pbx@192.0.2.5"),
            ("", "gateway/p"),
            (
                r#""from":"trunk/a","allow_trunk_to_trunk":true,"#,
                "gateway/p",
            ),
        ] {
            let text = route(extra, target);
            assert!(Dialplan::parse(&text).is_ok(), "{text}");
        }
    }
}
