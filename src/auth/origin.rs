//! The browser origin policy, against cross-site WebSocket hijacking: a
//! page on another site must not open a connection in its visitor's name.
//!
//! Origins are compared as parsed `(scheme, host, port)` triples, never as
//! string prefixes or suffixes, so `https://app.example.com.evil.com`,
//! `https://app.example.com@evil.com` and `http://app.example.com` are all
//! different from `https://app.example.com`. A wildcard entry
//! `https://*.example.com` matches hosts that end in `.example.com` on a
//! label boundary, and not `example.com` itself.
//!
//! Browsers always send `Origin` on a WebSocket handshake. A handshake
//! without one comes from some other client, which could have sent any
//! `Origin` it liked, so the header proves nothing there; the
//! `missing_origin` setting decides what such clients must show instead.

use crate::config::AuthSettings;

/// What to do with a handshake that has no `Origin` header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MissingOrigin {
    /// Allowed only with an `Authorization` header (the first-frame `auth`
    /// is a concession to browsers, which always send `Origin`).
    AuthorizationHeader,
    Allow,
    Deny,
}

/// Why a handshake was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum OriginRefusal {
    /// The origin is not on the allow-list (or is not an origin at all).
    #[error("origin not allowed")]
    NotAllowed,
    /// No `Origin` and no `Authorization` header, under
    /// [`MissingOrigin::AuthorizationHeader`].
    #[error("no Origin and no Authorization header")]
    CredentialsRequired,
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Entry {
    Exact(Origin),
    /// Any host ending in `.{suffix}`.
    Subdomains {
        https: bool,
        suffix: String,
        port: u16,
    },
}

#[derive(Clone, Debug)]
pub struct OriginPolicy {
    /// Every origin allowed (development only).
    any: bool,
    entries: Vec<Entry>,
    missing: MissingOrigin,
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('.')
        && !host.ends_with('.')
        && !host.contains("..")
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Parses `scheme://host[:port]` (lowercased); `None` for anything else,
/// including `null`, paths and user info.
fn parse(s: &str, allow_wildcard: bool) -> Option<(bool, String, u16)> {
    let s = s.trim().to_ascii_lowercase();
    let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else {
        return None;
    };
    let default_port = if https { 443 } else { 80 };
    // IPv6 literals carry colons inside their brackets.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => {
            let port: u16 = rest[i + 1..].parse().ok().filter(|p| *p > 0)?;
            (&rest[..i], port)
        }
        _ => (rest, default_port),
    };
    let check = host
        .strip_prefix("*.")
        .filter(|_| allow_wildcard)
        .unwrap_or(host);
    valid_host(check).then(|| (https, host.to_owned(), port))
}

impl OriginPolicy {
    /// The policy the settings describe. In `--dev` with no allow-list,
    /// every origin is allowed.
    ///
    /// # Errors
    /// A message naming the malformed `auth.allowed_origins` entry.
    pub fn from_settings(auth: &AuthSettings) -> Result<OriginPolicy, String> {
        let missing = match auth.missing_origin.as_str() {
            "allow" => MissingOrigin::Allow,
            "deny" => MissingOrigin::Deny,
            _ => MissingOrigin::AuthorizationHeader,
        };
        let mut entries = Vec::new();
        for raw in &auth.allowed_origins {
            let (https, host, port) = parse(raw, true).ok_or_else(|| {
                format!(
                    "auth.allowed_origins entry {raw:?} is not an origin: write \
                     scheme://host[:port], e.g. https://app.example.com or https://*.example.com"
                )
            })?;
            entries.push(match host.strip_prefix("*.") {
                Some(suffix) => Entry::Subdomains {
                    https,
                    suffix: suffix.to_owned(),
                    port,
                },
                None => Entry::Exact(Origin { https, host, port }),
            });
        }
        // `--dev` without an allow-list: any origin, any client.
        let open = auth.dev && entries.is_empty();
        Ok(OriginPolicy {
            any: open,
            entries,
            missing: if open { MissingOrigin::Allow } else { missing },
        })
    }

    /// Checks a handshake's `Origin` header (raw bytes, if present).
    ///
    /// # Errors
    /// [`OriginRefusal`] saying why.
    pub fn check(
        &self,
        origin: Option<&[u8]>,
        has_authorization: bool,
    ) -> Result<(), OriginRefusal> {
        let Some(raw) = origin else {
            return match self.missing {
                MissingOrigin::Allow => Ok(()),
                MissingOrigin::AuthorizationHeader if has_authorization => Ok(()),
                MissingOrigin::AuthorizationHeader => Err(OriginRefusal::CredentialsRequired),
                MissingOrigin::Deny => Err(OriginRefusal::NotAllowed),
            };
        };
        if self.any {
            return Ok(());
        }
        let o = std::str::from_utf8(raw)
            .ok()
            .and_then(|s| parse(s, false))
            .ok_or(OriginRefusal::NotAllowed)?;
        let (https, host, port) = o;
        let allowed = self.entries.iter().any(|e| match e {
            Entry::Exact(a) => a.https == https && a.host == host && a.port == port,
            Entry::Subdomains {
                https: h,
                suffix,
                port: p,
            } => {
                *h == https
                    && *p == port
                    && host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        });
        if allowed {
            Ok(())
        } else {
            Err(OriginRefusal::NotAllowed)
        }
    }

    /// True when no browser can connect (no allow-list outside `--dev`),
    /// which start-up warns about.
    pub fn refuses_every_browser(&self) -> bool {
        !self.any && self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn policy(origins: &[&str], missing: &str) -> OriginPolicy {
        let mut a = Settings::defaults().auth;
        a.allowed_origins = origins.iter().map(|s| s.to_string()).collect();
        a.missing_origin = missing.into();
        OriginPolicy::from_settings(&a).unwrap()
    }

    fn ok(p: &OriginPolicy, o: &str) -> bool {
        p.check(Some(o.as_bytes()), false).is_ok()
    }

    #[test]
    fn exact_origins_and_look_alikes() {
        let p = policy(
            &["https://app.example.com", "http://localhost:3000"],
            "deny",
        );
        assert!(ok(&p, "https://app.example.com"));
        assert!(ok(&p, "https://APP.example.com:443"));
        assert!(ok(&p, "http://localhost:3000"));
        for bad in [
            "https://app.example.com.evil.com",
            "https://evilapp.example.com",
            "https://app.example.co",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.com@evil.com",
            "https://evil.com/https://app.example.com",
            "https://app.example.com/",
            "https://app.example.com.",
            "null",
            "",
            "http://localhost:3001",
            "https://app.example.com, https://evil.com",
        ] {
            assert!(!ok(&p, bad), "{bad} must be refused");
        }
        assert!(p.check(Some(&[0xff, 0xfe]), true).is_err());
    }

    #[test]
    fn subdomain_wildcards_stop_at_a_label() {
        let p = policy(&["https://*.example.com"], "deny");
        assert!(ok(&p, "https://app.example.com"));
        assert!(ok(&p, "https://a.b.example.com"));
        assert!(!ok(&p, "https://example.com"));
        assert!(!ok(&p, "https://evilexample.com"));
        assert!(!ok(&p, "https://app.example.com.evil.com"));
        assert!(!ok(&p, "http://app.example.com"));
    }

    #[test]
    fn clients_without_origin() {
        let p = policy(&[], "authorization_header");
        assert!(p.check(None, true).is_ok());
        assert_eq!(
            p.check(None, false),
            Err(OriginRefusal::CredentialsRequired)
        );
        assert!(policy(&[], "allow").check(None, false).is_ok());
        assert!(policy(&[], "deny").check(None, true).is_err());
        assert!(p.refuses_every_browser());
        assert!(!ok(&p, "https://app.example.com"));
    }

    #[test]
    fn bad_entries_fail_start_up() {
        let mut a = Settings::defaults().auth;
        for bad in [
            "app.example.com",
            "https://",
            "ftp://x.com",
            "https://x.com/path",
        ] {
            a.allowed_origins = vec![bad.into()];
            assert!(OriginPolicy::from_settings(&a).is_err(), "{bad}");
        }
    }

    #[test]
    fn development_allows_any_origin_unless_listed() {
        let mut a = Settings::defaults().auth;
        a.dev = true;
        let p = OriginPolicy::from_settings(&a).unwrap();
        assert!(p.check(Some(b"https://anything.test"), false).is_ok());
        assert!(p.check(None, false).is_ok());
        a.allowed_origins = vec!["https://app.example.com".into()];
        let p = OriginPolicy::from_settings(&a).unwrap();
        assert!(p.check(Some(b"https://anything.test"), false).is_err());
    }
}
