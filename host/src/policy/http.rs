//! The operator's rules for a plugin's outbound HTTP, beyond the `http.outbound:<host>` grants:
//! where plain `http` is allowed, which otherwise refused address ranges are allowed, and the
//! limits. `[defaults.http]` and `[plugins.<id>.http]` in the policy file.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

/// Outbound HTTP rules for one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPolicy {
    /// Hosts (globs) that may be reached over plain `http`; everything else needs `https`.
    pub allow_http: Vec<String>,
    /// Address ranges allowed although they are loopback, private, link-local or multicast.
    pub allow_private: Vec<IpRange>,
    /// The most one call may take, redirects included (at most 30 s unless set).
    pub timeout: Duration,
    /// The largest response body accepted.
    pub max_body: u64,
    /// The most redirects followed (each re-checked).
    pub max_redirects: u32,
    /// How long a streamed response ([`Http::stream`](airlock_abi::Http::stream)) may send
    /// nothing before it is ended (30 s unless set). Its whole body has no limit.
    pub stream_idle: Duration,
}

/// The default limits: 30 s, 5 MiB, 5 redirects; a stream idle for 30 s is ended.
impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            allow_http: Vec::new(),
            allow_private: Vec::new(),
            timeout: Duration::from_secs(30),
            max_body: 5 << 20,
            max_redirects: 5,
            stream_idle: Duration::from_secs(30),
        }
    }
}

/// An address range in CIDR notation (`10.0.0.0/8`, `127.0.0.1/32`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    base: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `address/prefix` (a bare address is the range of that address alone).
    ///
    /// # Errors
    ///
    /// What is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = text.split_once('/').unwrap_or((text, ""));
        let base: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address range (as in 10.0.0.0/8)"))?;
        let bits = if base.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            bits
        } else {
            prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {bits}"))?
        };
        Ok(Self { base, prefix })
    }

    /// Whether `address` is in the range.
    pub fn contains(&self, address: IpAddr) -> bool {
        let (base, address, bits) = match (self.base, address) {
            (IpAddr::V4(b), IpAddr::V4(a)) => {
                (u128::from(b.to_bits()), u128::from(a.to_bits()), 32)
            }
            (IpAddr::V6(b), IpAddr::V6(a)) => (b.to_bits(), a.to_bits(), 128),
            _ => return false,
        };
        let host_bits = bits - u32::from(self.prefix);
        host_bits >= bits || (base >> host_bits) == (address >> host_bits)
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// `[defaults.http]`, `[plugins.<id>.http]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    allow_http: Option<Vec<String>>,
    allow_private: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    max_body_bytes: Option<u64>,
    max_redirects: Option<u32>,
    stream_idle_ms: Option<u64>,
}

/// `base` with what `raw` sets instead; `at` names the table for messages.
pub(super) fn http(
    base: &HttpPolicy,
    raw: Option<RawHttp>,
    at: &str,
) -> Result<HttpPolicy, String> {
    let Some(raw) = raw else {
        return Ok(base.clone());
    };
    let allow_private = match raw.allow_private {
        Some(ranges) => ranges
            .iter()
            .map(|r| IpRange::parse(r).map_err(|e| format!("{at} allow_private: {e}")))
            .collect::<Result<_, _>>()?,
        None => base.allow_private.clone(),
    };
    Ok(HttpPolicy {
        allow_http: raw.allow_http.unwrap_or_else(|| base.allow_http.clone()),
        allow_private,
        timeout: raw
            .timeout_ms
            .map_or(base.timeout, |ms| Duration::from_millis(ms.max(1))),
        max_body: raw.max_body_bytes.unwrap_or(base.max_body),
        max_redirects: raw.max_redirects.unwrap_or(base.max_redirects),
        stream_idle: raw
            .stream_idle_ms
            .map_or(base.stream_idle, |ms| Duration::from_millis(ms.max(1))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_contain_what_they_should() {
        let ten = IpRange::parse("10.0.0.0/8").expect("range");
        assert!(ten.contains("10.255.1.2".parse().expect("ip")));
        assert!(!ten.contains("11.0.0.1".parse().expect("ip")));
        assert!(!ten.contains("::1".parse().expect("ip")));
        let one = IpRange::parse("127.0.0.1").expect("range");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        let all = IpRange::parse("0.0.0.0/0").expect("range");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        let ula = IpRange::parse("fd00::/8").expect("range");
        assert!(ula.contains("fd12::1".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x", "::/129"] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
    }
}
