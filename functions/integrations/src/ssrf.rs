//! The SSRF guard for outgoing webhooks: a target URL's host is checked as
//! written (non-canonical IP spellings are refused outright: `0x7f.1`,
//! `2130706433`, `0177.0.0.1`, `127.1` all mean loopback to some parser),
//! then resolved, and every address of the answer is checked. The delivery
//! connects to the checked address only (`Target::pinned`), so a second DNS
//! answer (rebinding) is never consulted. Redirects are not followed at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What the guard allows beyond public addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// `KEEL_WEBHOOKS_ALLOW_LOOPBACK=1`: the literal `127.0.0.1` (that exact
    /// spelling, over plain HTTP too) for tests and local receivers. A name
    /// resolving to loopback stays refused.
    pub allow_loopback: bool,
}

impl Policy {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Policy {
        Policy { allow_loopback: lookup("KEEL_WEBHOOKS_ALLOW_LOOPBACK").as_deref() == Some("1") }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("only https URLs are allowed")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("credentials in the URL are not allowed")]
    UserInfo,
    #[error("the host {0:?} is not a DNS name or a canonically written IP address")]
    Spelling(String),
    #[error("the address {0} is not a public internet address")]
    Forbidden(IpAddr),
    #[error("the host did not resolve: {0}")]
    Resolve(String),
}

/// A URL that passed the static checks: what to resolve and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub url: url::Url,
    /// The host as written (lower-cased), for the pinned resolution.
    pub host: String,
    pub port: u16,
    /// Set when the host is an IP literal (nothing to resolve).
    pub literal: Option<IpAddr>,
}

/// A target to connect to: the URL and the one checked address to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: url::Url,
    pub host: String,
    pub pinned: SocketAddr,
}

/// The checks that need no DNS: scheme, spelling of the host, and for an IP
/// literal its range. Run when an endpoint is saved and before each delivery.
pub fn check_url(raw: &str, policy: Policy) -> Result<Checked, Refusal> {
    let (scheme, rest) = raw.split_once("://").ok_or(Refusal::Scheme)?;
    let scheme = scheme.to_ascii_lowercase();
    // The authority as written, before any URL parser rewrites it (WHATWG
    // parsers turn `0x7f.1` into `127.0.0.1`, which would hide the spelling).
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(Refusal::UserInfo);
    }
    let (host, port_text) = split_host_port(authority)?;
    if host.is_empty() {
        return Err(Refusal::NoHost);
    }
    let literal = literal_ip(host)?;
    let loopback_allowed = policy.allow_loopback && host == "127.0.0.1";
    match scheme.as_str() {
        "https" => {}
        "http" if loopback_allowed => {}
        _ => return Err(Refusal::Scheme),
    }
    if let Some(ip) = literal
        && !loopback_allowed
    {
        check_ip(ip)?;
    }
    let url = url::Url::parse(raw).map_err(|_| Refusal::Spelling(host.to_string()))?;
    let port = match port_text {
        Some(p) => p.parse::<u16>().map_err(|_| Refusal::Spelling(authority.to_string()))?,
        None => url.port_or_known_default().ok_or(Refusal::Scheme)?,
    };
    Ok(Checked { url, host: host.to_ascii_lowercase(), port, literal })
}

/// Resolve a checked URL and check every address of the answer: one
/// forbidden address refuses the target (a name that sometimes points
/// inside is not a public endpoint). The first address is pinned.
pub async fn resolve(checked: Checked) -> Result<Target, Refusal> {
    if let Some(ip) = checked.literal {
        return Ok(Target { url: checked.url, host: checked.host, pinned: SocketAddr::new(ip, checked.port) });
    }
    let addresses: Vec<SocketAddr> =
        tokio::net::lookup_host((checked.host.as_str(), checked.port)).await.map_err(|e| Refusal::Resolve(e.to_string()))?.collect();
    pin(checked, &addresses)
}

/// An HTTP client that can reach only `url`'s host, at the address just
/// checked (DNS is asked once, here): no redirects, no proxy, `timeout`.
/// Every outgoing call to a URL someone configured goes through it (webhook
/// deliveries, the hub's connection tests). Err: why the target is refused.
pub async fn guarded_client(url: &str, policy: Policy, timeout: std::time::Duration, user_agent: &str) -> Result<(reqwest::Client, url::Url), String> {
    let checked = check_url(url, policy).map_err(|refusal| format!("refused: {refusal}"))?;
    let target = resolve(checked).await.map_err(|refusal| format!("refused: {refusal}"))?;
    shared::platform::tls::install();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .user_agent(user_agent)
        .resolve(&target.host, target.pinned)
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    Ok((client, target.url))
}

/// The address a delivery connects to, from one DNS answer.
pub fn pin(checked: Checked, answer: &[SocketAddr]) -> Result<Target, Refusal> {
    let first = *answer.first().ok_or_else(|| Refusal::Resolve("no addresses".into()))?;
    for address in answer {
        // Loopback through a name is refused even when the canonical literal
        // is allowed: `localhost` or a rebinding name must not reach in.
        check_ip(address.ip())?;
    }
    Ok(Target { url: checked.url, host: checked.host, pinned: first })
}

fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), Refusal> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| Refusal::Spelling(authority.to_string()))?;
        return match after {
            "" => Ok((host, None)),
            port => Ok((host, Some(port.strip_prefix(':').ok_or_else(|| Refusal::Spelling(authority.to_string()))?))),
        };
    }
    Ok(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// The IP a host names literally, if it is one. Anything that some parser
/// could read as an address must be the canonical form of that address
/// (dotted decimal without leading zeros, or RFC 5952 IPv6); a DNS name must
/// be plain ASCII letters, digits, hyphens and dots.
fn literal_ip(host: &str) -> Result<Option<IpAddr>, Refusal> {
    let refuse = || Refusal::Spelling(host.to_string());
    if host.contains(':') {
        let ip: Ipv6Addr = host.parse().map_err(|_| refuse())?;
        // One spelling per address: `::FFFF:7f00:1`, `0::1` and zone ids are out.
        return if ip.to_string() == host { Ok(Some(IpAddr::V6(ip))) } else { Err(refuse()) };
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(refuse());
    }
    // WHATWG and inet_aton read a host as IPv4 when its last label is a
    // number (decimal, 0x hex, or octal): such hosts must be canonical IPv4.
    let last = host.rsplit('.').next().unwrap_or("");
    let numeric = |label: &str| {
        !label.is_empty()
            && (label.bytes().all(|b| b.is_ascii_digit())
                || label.strip_prefix("0x").or_else(|| label.strip_prefix("0X")).is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())))
    };
    if host.ends_with('.') || host.starts_with('.') || host.contains("..") {
        return Err(refuse());
    }
    if numeric(last) {
        let ip: Ipv4Addr = host.parse().map_err(|_| refuse())?;
        return if ip.to_string() == host { Ok(Some(IpAddr::V4(ip))) } else { Err(refuse()) };
    }
    Ok(None)
}

/// Refuse every address that is not a public unicast internet address.
pub fn check_ip(ip: IpAddr) -> Result<(), Refusal> {
    let forbidden = match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    };
    if forbidden { Err(Refusal::Forbidden(ip)) } else { Ok(()) }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    const NETS: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", 0.0.0.0
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // carrier-grade NAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, the instance metadata address
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    NETS.iter().any(|(net, prefix)| in_v4(ip, *net, *prefix))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        // IPv4-mapped (::ffff:0:0/96) and IPv4-compatible (::/96): an IPv4
        // address in IPv6 clothing is refused whatever it maps to.
        || (s[0..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0))
        // NAT64 (64:ff9b::/96 and 64:ff9b:1::/48) reaches IPv4 behind it.
        || (s[0] == 0x64 && s[1] == 0xff9b)
        // 6to4 (2002::/16) and Teredo (2001::/32) tunnel to IPv4 as well.
        || s[0] == 0x2002
        || (s[0] == 0x2001 && s[1] == 0)
        // Documentation (2001:db8::/32).
        || (s[0] == 0x2001 && s[1] == 0xdb8)
        // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] & 0xff00) == 0xff00
        // Discard-only 100::/64.
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spellings of internal addresses an attacker might register as a
    /// webhook URL; every one must be refused before any connection.
    const REFUSED: &[&str] = &[
        // Loopback, every way it is written.
        "https://127.0.0.1/",
        "https://127.0.0.2/",
        "https://127.255.255.254/",
        "https://127.1/",
        "https://127.0.1/",
        "https://2130706433/",
        "https://0x7f000001/",
        "https://0x7f.0x0.0x0.0x1/",
        "https://0x7f.1/",
        "https://0177.0.0.1/",
        "https://0177.1/",
        "https://017700000001/",
        "https://00000177.0.0.1/",
        "https://127.000.000.001/",
        "https://127.0.0.1./",
        "https://0X7F.0.0.1/",
        "https://[::1]/",
        "https://[0:0:0:0:0:0:0:1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://[::FFFF:7F00:1]/",
        "https://[0::1]/",
        "https://[::127.0.0.1]/",
        "https://[::1%25eth0]/",
        // Unspecified.
        "https://0.0.0.0/",
        "https://0/",
        "https://0x0/",
        "https://[::]/",
        // Link-local and the instance metadata service.
        "https://169.254.169.254/",
        "https://169.254.169.254:80/latest/meta-data/",
        "https://2852039166/",
        "https://0xa9fea9fe/",
        "https://0xa9.0xfe.0xa9.0xfe/",
        "https://0251.0376.0251.0376/",
        "https://169.254.43518/",
        "https://[::ffff:169.254.169.254]/",
        "https://[::ffff:a9fe:a9fe]/",
        "https://[fe80::1]/",
        "https://[fd00:ec2::254]/",
        // Private ranges.
        "https://10.0.0.1/",
        "https://10.255.255.255/",
        "https://167772161/",
        "https://012.0.0.1/",
        "https://0xa.0.0.1/",
        "https://172.16.0.1/",
        "https://172.31.255.255/",
        "https://192.168.0.1/",
        "https://192.168.1.1:8443/",
        "https://3232235777/",
        "https://0xc0a80001/",
        "https://0300.0250.0.1/",
        "https://[::ffff:10.0.0.1]/",
        "https://[::ffff:192.168.0.1]/",
        // Carrier-grade NAT and other special-purpose blocks.
        "https://100.64.0.1/",
        "https://100.127.255.254/",
        "https://192.0.0.1/",
        "https://198.18.0.1/",
        "https://224.0.0.1/",
        "https://255.255.255.255/",
        // IPv6 special ranges.
        "https://[fc00::1]/",
        "https://[fd12:3456:789a::1]/",
        "https://[fec0::1]/",
        "https://[ff02::1]/",
        "https://[64:ff9b::a9fe:a9fe]/",
        "https://[2002:7f00:1::]/",
        "https://[2001::1]/",
        "https://[2001:db8::1]/",
        // Not a plain host at all.
        "https://user:pass@example.com/",
        "https://example.com@127.0.0.1/",
        "https://exa%6dple.com/",
        "https://例え.jp/",
        "https://1.1.1.1.1/",
        "https://256.0.0.1/",
        "https://1.2.3.0x4/",
        "https://example..com/",
        "https:///path",
        "http://example.com/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "example.com",
        "gopher://127.0.0.1:25/",
    ];

    #[test]
    fn refuses_every_internal_spelling() {
        assert!(REFUSED.len() >= 50);
        // Even with loopback allowed only the canonical literal passes.
        for policy in [Policy::default(), Policy { allow_loopback: true }] {
            for url in REFUSED {
                if policy.allow_loopback && *url == "https://127.0.0.1/" {
                    continue;
                }
                assert!(check_url(url, policy).is_err(), "{url} was accepted with {policy:?}");
            }
        }
    }

    #[test]
    fn accepts_public_hosts_and_canonical_addresses() {
        for url in ["https://example.com/hook", "https://hooks.example.com:8443/a?b=c", "https://93.184.215.14/x", "https://[2606:4700::6810:84e5]/"] {
            let checked = check_url(url, Policy::default()).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(checked.url.as_str().split("://").next(), Some("https"));
        }
    }

    #[test]
    fn loopback_only_as_the_canonical_literal_when_allowed() {
        let allowed = Policy { allow_loopback: true };
        let checked = check_url("http://127.0.0.1:8080/hook", allowed).unwrap();
        assert_eq!((checked.literal, checked.port), (Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), 8080));
        assert!(check_url("http://127.0.0.1:8080/hook", Policy::default()).is_err());
        for url in ["http://localhost:8080/", "http://127.1:8080/", "http://[::1]:8080/", "http://2130706433:8080/"] {
            assert!(check_url(url, allowed).is_err(), "{url}");
        }
    }

    #[test]
    fn every_address_of_an_answer_is_checked() {
        let checked = check_url("https://rebind.example.com/", Policy::default()).unwrap();
        let public: SocketAddr = "93.184.215.14:443".parse().unwrap();
        let metadata: SocketAddr = "169.254.169.254:443".parse().unwrap();
        assert_eq!(pin(checked.clone(), &[public]).unwrap().pinned, public);
        assert!(pin(checked.clone(), &[public, metadata]).is_err());
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:443".parse().unwrap();
        assert!(pin(checked.clone(), &[mapped]).is_err());
        // A name answering loopback stays refused when the literal is allowed.
        let loopback: SocketAddr = "127.0.0.1:443".parse().unwrap();
        assert!(pin(checked, &[loopback]).is_err());
    }
}
