//! Which destinations the hub may call: a webhook URL could point the hub
//! at its own network (a database, a cloud metadata service). Addresses
//! are checked after DNS resolution, by the resolver the HTTP client
//! connects through, so a name that resolves to a refused address (or
//! changes to one later) is refused on every connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// What the settings allow beyond public addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    pub allow_loopback: bool,
    pub allow_private: bool,
}

/// Cloud metadata services, never allowed.
const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(100, 100, 100, 200),
];
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

impl AddressPolicy {
    /// Why `ip` is refused, or `None` if it may be called.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        match ip {
            IpAddr::V4(v4) => self.refuses_v4(v4),
            IpAddr::V6(v6) => {
                if let Some(v4) = embedded_v4(v6) {
                    return self.refuses_v4(v4);
                }
                let s = v6.segments();
                if v6 == METADATA_V6 {
                    Some("a cloud metadata address")
                } else if v6.is_unspecified() || v6.is_multicast() {
                    Some("an unspecified or multicast address")
                } else if v6.is_loopback() {
                    (!self.allow_loopback).then_some("a loopback address")
                } else if s[0] & 0xffc0 == 0xfe80 {
                    (!self.allow_private).then_some("a link-local address")
                } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
                    (!self.allow_private).then_some("a private address")
                } else {
                    None
                }
            }
        }
    }

    fn refuses_v4(&self, ip: Ipv4Addr) -> Option<&'static str> {
        let o = ip.octets();
        if METADATA_V4.contains(&ip) {
            Some("a cloud metadata address")
        } else if ip.is_unspecified() || o[0] == 0 || ip.is_broadcast() || ip.is_multicast() {
            Some("an unspecified, broadcast or multicast address")
        } else if ip.is_loopback() {
            (!self.allow_loopback).then_some("a loopback address")
        } else if ip.is_link_local() {
            (!self.allow_private).then_some("a link-local address")
        } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
            (!self.allow_private).then_some("a private address")
        } else {
            None
        }
    }

    /// Checks every address; refuses all if one is refused (a name must
    /// not mix a public address with an internal one).
    ///
    /// # Errors
    /// The first refused address and why.
    pub fn check_all(&self, addrs: &[SocketAddr]) -> Result<(), String> {
        if addrs.is_empty() {
            return Err("the name resolves to no address".into());
        }
        for a in addrs {
            if let Some(why) = self.refuses(a.ip()) {
                return Err(format!("{} is {why}", a.ip()));
            }
        }
        Ok(())
    }
}

/// The IPv4 address inside an IPv4-mapped, IPv4-compatible or NAT64
/// IPv6 address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(tail);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
        return Some(tail);
    }
    None
}

/// A destination refused by the policy.
#[derive(Debug, thiserror::Error)]
#[error("destination refused: {0}")]
pub struct Refused(pub String);

/// The HTTP client's resolver: the system's, then the policy.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            policy.check_all(&addrs).map_err(
                |why| -> Box<dyn std::error::Error + Send + Sync> {
                    Box::new(Refused(format!("{host}: {why}")))
                },
            )?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

impl GuardedResolver {
    pub fn shared(policy: AddressPolicy) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { policy })
    }
}

/// Checks a URL before it is stored or called: `http` or `https`, a
/// host, no credentials, at most 500 bytes; an address literal must be
/// allowed, a name must resolve to allowed addresses (a name that does
/// not resolve now is accepted: it is checked again on every attempt).
///
/// # Errors
/// What is wrong, for the caller.
pub async fn check_url(url: &str, policy: AddressPolicy) -> Result<reqwest::Url, String> {
    if url.len() > 500 {
        return Err("url is longer than 500 bytes".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("url must be http:// or https://".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url must not carry credentials".into());
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    match parsed.host() {
        None => Err("url has no host".into()),
        Some(url::Host::Ipv4(ip)) => literal(policy, IpAddr::V4(ip), port).map(|_| parsed),
        Some(url::Host::Ipv6(ip)) => literal(policy, IpAddr::V6(ip), port).map(|_| parsed),
        Some(url::Host::Domain(d)) => {
            if let Ok(addrs) = tokio::net::lookup_host((d, port)).await {
                let addrs: Vec<SocketAddr> = addrs.collect();
                policy
                    .check_all(&addrs)
                    .map_err(|why| format!("url's host {d}: {why}"))?;
            }
            Ok(parsed)
        }
    }
}

fn literal(policy: AddressPolicy, ip: IpAddr, port: u16) -> Result<(), String> {
    policy
        .check_all(&[SocketAddr::new(ip, port)])
        .map_err(|why| format!("url's host: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_internal_addresses_by_default() {
        let p = AddressPolicy::default();
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "fd00:ec2::254",
            "224.0.0.1",
        ] {
            assert!(p.refuses(ip(a)).is_some(), "{a} should be refused");
        }
        for a in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(p.refuses(ip(a)).is_none(), "{a} should be allowed");
        }
    }

    #[test]
    fn settings_open_what_they_name_and_never_metadata() {
        let lo = AddressPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        assert!(lo.refuses(ip("127.0.0.1")).is_none());
        assert!(lo.refuses(ip("::1")).is_none());
        assert!(lo.refuses(ip("10.0.0.1")).is_some());
        let private = AddressPolicy {
            allow_loopback: false,
            allow_private: true,
        };
        assert!(private.refuses(ip("10.0.0.1")).is_none());
        assert!(private.refuses(ip("169.254.1.1")).is_none());
        assert!(private.refuses(ip("127.0.0.1")).is_some());
        assert!(private.refuses(ip("169.254.169.254")).is_some());
    }

    #[tokio::test]
    async fn urls_are_checked() {
        let p = AddressPolicy::default();
        assert!(check_url("ftp://example.com/", p).await.is_err());
        assert!(check_url("http://user:pw@example.com/", p).await.is_err());
        assert!(check_url("http://127.0.0.1:9/hook", p).await.is_err());
        assert!(check_url("http://[::1]/hook", p).await.is_err());
        assert!(check_url("http://localhost/hook", p).await.is_err());
        assert!(check_url("https://93.184.216.34/hook", p).await.is_ok());
    }
}
