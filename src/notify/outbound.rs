//! Where owner-set URLs may lead. Merchant callbacks, the operator gate and Slack messages go
//! to URLs a project's owner types in, and one install serves many projects: unchecked, the
//! owner of one project could make the service request the operator's own network (a cloud
//! metadata endpoint, a database's admin port, another service on localhost) and read the
//! answers back from the delivery log. Every such request goes through [`Outbound`]:
//!
//! - a URL whose host is an IP address is checked before anything is sent ([`Outbound::post`]);
//! - a host name is resolved by [`GuardedResolver`], which keeps only permitted addresses, and
//!   the connection goes to one of those: there is no second lookup, so a name that answers
//!   differently the next time (DNS rebinding) gains nothing.
//!
//! Permitted: the public internet, plus whatever `outbound.allowed_networks` lists (a merchant
//! whose callback receiver sits on its own private network lists that network). Refused:
//! loopback, private (RFC 1918, IPv6 unique local), link-local (cloud metadata lives at
//! 169.254.169.254), shared address space, "this network", multicast, reserved, benchmarking
//! and documentation ranges; IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4) are
//! judged by that address. Redirects are never followed, so a permitted host cannot pass the
//! request on to a refused one.
//!
//! An HTTP proxy configured through the environment (`HTTPS_PROXY`) resolves names itself;
//! IP-address URLs are still checked here, names then only by the proxy's own rules.

use crate::config::{CallbackSettings, Network};
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// A request the policy does not let out, with the reason for the delivery log or the form.
#[derive(Debug, Clone, thiserror::Error)]
#[error("refused: {}", self.reason())]
pub struct Refused {
    host: String,
    what: &'static str,
    addrs: String,
}

impl Refused {
    /// The reason without the leading "refused:", for a form's field.
    pub fn reason(&self) -> String {
        format!(
            "{} {} outside the public internet ({}); the operator can allow it in outbound.allowed_networks",
            self.host, self.what, self.addrs
        )
    }

    fn new(host: &str, resolved: bool, addrs: &[IpAddr]) -> Refused {
        let list: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
        Refused {
            host: host.to_string(),
            what: if resolved {
                "resolves only to addresses"
            } else {
                "is an address"
            },
            addrs: list.join(", "),
        }
    }
}

/// Which addresses owner-set URLs may reach.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Vec<Network>,
}

/// Ranges that are not the public internet (IPv4; IPv6 below).
static REFUSED_V4: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",       // "this network"
        "10.0.0.0/8",      // private
        "100.64.0.0/10",   // shared address space (carrier-grade NAT)
        "127.0.0.0/8",     // loopback
        "169.254.0.0/16",  // link-local, cloud metadata
        "172.16.0.0/12",   // private
        "192.0.0.0/24",    // IETF protocol assignments
        "192.0.2.0/24",    // documentation
        "192.88.99.0/24",  // 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  // private
        "198.18.0.0/15",   // benchmarking
        "198.51.100.0/24", // documentation
        "203.0.113.0/24",  // documentation
        "224.0.0.0/4",     // multicast
        "240.0.0.0/4",     // reserved, broadcast
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
});

static REFUSED_V6: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "::/128",        // unspecified
        "::1/128",       // loopback
        "100::/64",      // discard
        "2001:db8::/32", // documentation
        "fc00::/7",      // unique local
        "fe80::/10",     // link-local
        "fec0::/10",     // site-local (deprecated)
        "ff00::/8",      // multicast
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
});

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that embed one:
/// IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let [a, b] = [s[6].to_be_bytes(), s[7].to_be_bytes()];
    match s {
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(Ipv4Addr::new(a[0], a[1], b[0], b[1])),
        [0x2002, hi, lo, ..] => {
            let (h, l) = (hi.to_be_bytes(), lo.to_be_bytes());
            Some(Ipv4Addr::new(h[0], h[1], l[0], l[1]))
        }
        _ => None,
    }
}

/// Whether `ip` is on the public internet (none of the ranges above).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !REFUSED_V4.iter().any(|n| n.contains(&IpAddr::V4(v4))),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => !REFUSED_V6.iter().any(|n| n.contains(&IpAddr::V6(v6))),
        },
    }
}

impl OutboundPolicy {
    pub fn new(allowed: Vec<Network>) -> OutboundPolicy {
        OutboundPolicy { allowed }
    }

    /// Whether a request may go to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let also = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        is_public(ip)
            || self
                .allowed
                .iter()
                .any(|n| n.contains(&ip) || also.is_some_and(|v4| n.contains(&v4)))
    }

    /// Checks a URL whose host is an IP address (a name is checked when it is resolved). A
    /// URL that does not parse passes: the form's own check or the request reports it.
    pub fn check_url(&self, url: &str) -> Result<(), Refused> {
        let Ok(u) = url::Url::parse(url) else {
            return Ok(());
        };
        let ip = match u.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(Refused::new(&ip.to_string(), false, &[ip]))
        }
    }

    /// Like [`check_url`](Self::check_url), and also resolves a host name (for a settings
    /// form: the owner learns at once that the URL cannot be reached from here). A name that
    /// does not resolve passes, as it may not be published yet; delivery checks again.
    pub async fn check_url_resolving(&self, url: &str) -> Result<(), Refused> {
        self.check_url(url)?;
        let Some(host) = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
        else {
            return Ok(());
        };
        match self.resolve(&host).await {
            Ok(_) | Err(Lookup::Failed(_)) => Ok(()),
            Err(Lookup::Refused(r)) => Err(r),
        }
    }

    /// The permitted addresses `host` resolves to.
    async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, Lookup> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(Lookup::Failed)?
            .collect();
        let (ok, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
            found.into_iter().partition(|a| self.permits(a.ip()));
        if ok.is_empty() && !refused.is_empty() {
            let ips: Vec<IpAddr> = refused.iter().map(SocketAddr::ip).collect();
            return Err(Lookup::Refused(Refused::new(host, true, &ips)));
        }
        Ok(ok)
    }
}

enum Lookup {
    Failed(std::io::Error),
    Refused(Refused),
}

/// reqwest's resolver for owner-set URLs: the system's lookup, then only permitted addresses.
struct GuardedResolver(Arc<OutboundPolicy>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            match policy.resolve(&host).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(Lookup::Failed(e)) => Err(e.into()),
                Err(Lookup::Refused(r)) => Err(r.into()),
            }
        })
    }
}

/// The HTTP client for owner-set URLs (callbacks, the operator gate, Slack): redirects off,
/// the callback timeouts, and the policy above.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    policy: Arc<OutboundPolicy>,
}

impl Outbound {
    pub fn new(
        callbacks: &CallbackSettings,
        allowed: Vec<Network>,
    ) -> Result<Outbound, reqwest::Error> {
        let policy = Arc::new(OutboundPolicy::new(allowed));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(callbacks.connect_timeout_secs))
            .timeout(Duration::from_secs(callbacks.timeout_secs))
            .dns_resolver(GuardedResolver(policy.clone()))
            .build()?;
        Ok(Outbound { client, policy })
    }

    /// A POST to `url`, unless its host is a refused address (a refused name fails when the
    /// request is sent, with [`Refused`] as the error's source: see
    /// [`describe_http_failure`](crate::error::describe_http_failure)).
    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, Refused> {
        self.policy.check_url(url)?;
        Ok(self.client.post(url))
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }
}

/// The [`Refused`] behind a failed request, if that is why it failed.
pub fn refusal_of<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e Refused> {
    let mut cur: Option<&'e (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_public_internet_is_permitted_and_nothing_else() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "2a00:1450::1",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
        for private in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            // IPv6 forms of refused IPv4 addresses
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        // the edges of 172.16.0.0/12 and of 100.64.0.0/10
        assert!(is_public(ip("172.15.255.255")));
        assert!(is_public(ip("172.32.0.0")));
        assert!(is_public(ip("100.128.0.0")));
        // an IPv6 form of a public IPv4 address is public
        assert!(is_public(ip("::ffff:8.8.8.8")));
    }

    #[test]
    fn allowed_networks_open_exactly_what_they_list() {
        let policy = OutboundPolicy::new(vec!["10.20.0.0/16".parse().unwrap()]);
        assert!(policy.permits(ip("10.20.3.4")));
        assert!(policy.permits(ip("::ffff:10.20.3.4")));
        assert!(!policy.permits(ip("10.21.0.1")));
        assert!(!policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("8.8.8.8")));
    }

    #[test]
    fn urls_with_refused_addresses_are_refused_before_sending() {
        let policy = OutboundPolicy::default();
        let err = policy
            .check_url("http://169.254.169.254/latest/meta-data/")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "refused: 169.254.169.254 is an address outside the public internet (169.254.169.254); \
             the operator can allow it in outbound.allowed_networks"
        );
        assert!(policy.check_url("http://[::1]:8080/x").is_err());
        assert!(policy.check_url("http://[::ffff:7f00:1]/x").is_err());
        assert!(policy.check_url("https://8.8.8.8/hook").is_ok());
        // names are checked when resolved, not here
        assert!(policy.check_url("https://receiver.example/hook").is_ok());
    }

    #[tokio::test]
    async fn names_that_resolve_to_refused_addresses_are_refused() {
        let policy = OutboundPolicy::default();
        let err = policy
            .check_url_resolving("http://localhost:9/cb")
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "refused: localhost resolves only to addresses outside the public internet ("
            ),
            "{err}"
        );
        let loopback =
            OutboundPolicy::new(vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
        assert!(
            loopback
                .check_url_resolving("http://localhost:9/cb")
                .await
                .is_ok()
        );
    }
}
