//! Requests darkroom makes on a user's behalf (job webhooks today) must not reach
//! what that user could not: this box's loopback, link-local addresses (the cloud
//! metadata service lives at 169.254.169.254), private and other internal ranges —
//! unless an admin allows them (`api.allow_private_targets`, or per target in
//! `api.allowed_targets`).
//!
//! The check is made twice. At submit, so a bad URL is a 400 naming its field.
//! And when connecting: the guarded client resolves names through
//! [`GuardedResolver`], which drops forbidden addresses before the connection is
//! made to what it returns — no window for a name to resolve to a public address
//! at submit and to 127.0.0.1 at delivery (DNS rebinding) — and its redirect
//! policy checks every hop the same way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

/// Why an address is internal, or `None` for a public one.
pub fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local (where cloud metadata services answer)")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared address space (carrier-grade NAT)")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("multicast or reserved")
    } else {
        None
    }
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique local (private)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// One allowance of `api.allowed_targets`: a network (`10.0.0.0/8`, an address)
/// or a host name (`n8n`, `hooks.lan`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    Net { addr: IpAddr, prefix: u8 },
    Host(String),
}

impl Allowed {
    fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        if let Ok(addr) = addr.parse::<IpAddr>() {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("{text:?}: the prefix after '/' must be 0..={max}"))?,
                None => max,
            };
            return Ok(Self::Net { addr, prefix });
        }
        let host_ok = !text.is_empty()
            && prefix.is_none()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
        if !host_ok {
            return Err(format!(
                "{text:?} is not an address, a network (10.0.0.0/8) or a host name"
            ));
        }
        Ok(Self::Host(text.to_ascii_lowercase()))
    }

    fn covers(&self, ip: IpAddr) -> bool {
        let Self::Net { addr, prefix } = self else {
            return false;
        };
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        let ((net, len), (x, xlen)) = (bits(*addr), bits(ip));
        if len != xlen {
            return false;
        }
        let keep = u32::from(*prefix);
        keep == 0 || (net ^ x) >> (128 - keep) == 0
    }
}

/// Which targets outbound requests may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    allow_private: bool,
    allowed: Vec<Allowed>,
}

impl TargetPolicy {
    /// From `api.allow_private_targets` and `api.allowed_targets`; an error names
    /// the entry at fault.
    pub fn new(allow_private: bool, allowed: &[String]) -> Result<Self, String> {
        let allowed = allowed
            .iter()
            .enumerate()
            .map(|(i, t)| Allowed::parse(t).map_err(|e| format!("api.allowed_targets[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            allow_private,
            allowed,
        })
    }

    /// Anything goes (an admin's choice).
    pub fn open() -> Self {
        Self {
            allow_private: true,
            allowed: Vec::new(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed
            .iter()
            .any(|a| matches!(a, Allowed::Host(h) if *h == host))
    }

    /// Why `ip` may not be reached, if it may not.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        if self.allow_private || self.allowed.iter().any(|a| a.covers(ip)) {
            return None;
        }
        internal(ip).map(|why| {
            format!(
                "{ip} is a {why} address, which requests made for users may not reach \
                 (an admin can allow it: api.allow_private_targets or api.allowed_targets)"
            )
        })
    }

    /// Checks a URL a user gave for darkroom to call: its host, and each address
    /// its name resolves to now. The error is the reason, for the caller to name
    /// its field.
    pub async fn check_url(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        if let Some(ip) = literal(&parsed) {
            return self.refusal(ip).map_or(Ok(()), Err);
        }
        match parsed.host_str() {
            None => Err(format!("{url:?} has no host")),
            Some(name) => {
                if self.allow_private || self.host_allowed(name) {
                    return Ok(());
                }
                let addrs = tokio::net::lookup_host((name, port))
                    .await
                    .map_err(|e| format!("cannot resolve {name}: {e}"))?;
                for a in addrs {
                    if let Some(why) = self.refusal(a.ip()) {
                        return Err(format!("{name} resolves to {why}"));
                    }
                }
                Ok(())
            }
        }
    }

    /// A client builder whose connections and redirects keep to this policy.
    pub fn guard(self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let policy = Arc::new(self);
        let redirects = policy.clone();
        builder
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match literal(attempt.url()).and_then(|ip| redirects.refusal(ip)) {
                    Some(why) => {
                        let to = attempt.url().to_string();
                        attempt.error(format!("redirected to {to}: {why}"))
                    }
                    None => attempt.follow(),
                }
            }))
    }

    /// Whether a URL with a literal address may be called (names are checked
    /// by the resolver as the connection is made).
    pub fn check_literal(&self, url: &str) -> Result<(), String> {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return Ok(());
        };
        literal(&parsed)
            .and_then(|ip| self.refusal(ip))
            .map_or(Ok(()), Err)
    }
}

/// The address a URL names literally (`http://10.0.0.1/`, `http://[::1]/`).
fn literal(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Resolves names for the guarded client, leaving out the addresses the policy
/// forbids; a name with none left fails to resolve, with the reason.
pub struct GuardedResolver {
    policy: Arc<TargetPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.host_allowed(&host) {
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            let mut refused = None;
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.refusal(a.ip()) {
                    Some(why) => {
                        refused = Some(why);
                        false
                    }
                    None => true,
                })
                .collect();
            if kept.is_empty() {
                let why = refused.unwrap_or_else(|| "no addresses".into());
                return Err(format!("{host}: {why}").into());
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges_are_named_and_public_ones_pass() {
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.20", "private"),
            ("100.64.0.1", "carrier-grade"),
            ("0.0.0.0", "unspecified"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("fd00::1", "unique local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
        ] {
            let got = internal(ip.parse().unwrap());
            assert!(got.is_some_and(|g| g.contains(why)), "{ip}: {got:?}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "172.32.0.1", "2606:4700::1111"] {
            assert_eq!(internal(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn allowances_cover_their_networks_and_hosts_only() {
        let p =
            TargetPolicy::new(false, &["10.0.0.0/8".into(), "192.168.1.20".into(), "n8n".into()]).unwrap();
        assert_eq!(p.refusal("10.200.0.1".parse().unwrap()), None);
        assert_eq!(p.refusal("::ffff:10.0.0.1".parse().unwrap()), None);
        assert_eq!(p.refusal("192.168.1.20".parse().unwrap()), None);
        assert!(p.refusal("192.168.1.21".parse().unwrap()).is_some());
        assert!(p.refusal("127.0.0.1".parse().unwrap()).is_some());
        assert!(p.host_allowed("N8N"));
        assert!(
            TargetPolicy::open()
                .refusal("127.0.0.1".parse().unwrap())
                .is_none()
        );
        let e = TargetPolicy::new(false, &["ok.lan".into(), "10.0.0.0/40".into()]).unwrap_err();
        assert!(e.starts_with("api.allowed_targets[1]"), "{e}");
        assert!(TargetPolicy::new(false, &["http://x".into()]).is_err());
    }

    #[tokio::test]
    async fn urls_are_checked_by_literal_and_by_what_names_resolve_to() {
        let p = TargetPolicy::default();
        let e = p
            .check_url("http://169.254.169.254/latest/meta-data/")
            .await
            .unwrap_err();
        assert!(e.contains("link-local"), "{e}");
        let e = p.check_url("http://localhost:8080/hook").await.unwrap_err();
        assert!(
            e.contains("localhost resolves to") && e.contains("loopback"),
            "{e}"
        );
        assert!(p.check_url("http://[::1]/").await.is_err());
        assert!(p.check_url("https://93.184.215.14/hook").await.is_ok());
        let allowed = TargetPolicy::new(false, &["localhost".into()]).unwrap();
        assert!(allowed.check_url("http://localhost:8080/hook").await.is_ok());
    }
}
