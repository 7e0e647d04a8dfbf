//! `server.trusted_proxies`: who may send a PROXY protocol header. Parsed
//! with the config file, so that a bad entry stops the start with its key
//! and nothing later parses it again.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// CIDRs (`10.0.0.0/8`) or single addresses (`10.0.0.5`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct TrustedProxies(Vec<IpNet>);

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = String;

    fn try_from(list: Vec<String>) -> Result<Self, String> {
        list.iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is neither a CIDR nor an address"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl From<TrustedProxies> for Vec<String> {
    fn from(t: TrustedProxies) -> Self {
        t.0.iter().map(IpNet::to_string).collect()
    }
}

impl Default for TrustedProxies {
    /// Loopback only.
    fn default() -> Self {
        Self(vec![
            "127.0.0.0/8".parse().expect("literal"),
            "::1/128".parse().expect("literal"),
        ])
    }
}

impl TrustedProxies {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4 address in IPv6 form (a dual-stack listener's) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_networks_are_trusted() {
        let t = TrustedProxies::try_from(vec!["127.0.0.0/8".into(), "10.1.2.3".into()]).unwrap();
        assert!(t.trusts("127.0.0.9".parse().unwrap()));
        assert!(t.trusts("10.1.2.3".parse().unwrap()));
        assert!(t.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!t.trusts("10.1.2.4".parse().unwrap()));
        assert!(!t.trusts("::1".parse().unwrap()));
        assert!(TrustedProxies::try_from(vec!["nonsense".into()]).is_err());
        assert!(TrustedProxies::default().trusts("::1".parse().unwrap()));
    }

    #[test]
    fn a_bad_entry_in_the_file_names_its_key() {
        let e = toml::from_str::<crate::config::Config>(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"nowhere\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("trusted_proxies") && e.contains("\"nowhere\""),
            "{e}"
        );
    }
}
