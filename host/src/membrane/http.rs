//! The `http` service: outbound HTTP made by the host for a plugin. Each hop (the request, then
//! every redirect) is checked before anything is sent: the host against the plugin's
//! `http.outbound` grants, the scheme (`https`, or `http` where the policy allows it for that
//! host), and every address the name resolves to (no loopback, private, link-local, multicast or other
//! special-purpose address unless the policy allows its range). The client then connects to
//! the addresses checked — its resolver is this module's, so there is no second lookup a
//! rebinding name could answer differently. Time and body size are capped; every call, made
//! or refused, leaves one audit record with the method, host, status and size, never headers
//! or bodies.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::wire::{HttpAnswer, HttpHead};

use airlock_abi::manifest::CapabilityKind;
use airlock_abi::wire::{self, Request};

use super::row::{raw, Grant};
use super::{bad_request, host_error};
use crate::policy::HttpPolicy;
use crate::services::audit::AuditOutcome;
use crate::services::registry::{BuiltIn, Requester};
use airlock_abi::manifest::glob_match;

/// One row per operation: its payloads are frames (a JSON head, then the body as it is), and
/// its grant is checked for each hop's host.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    vec![raw(
        Request::HttpRequest,
        Grant::ByHandler(CapabilityKind::HttpOutbound),
        serve,
    )]
}

/// What one plugin's call needs from the host.
pub(crate) struct Outbound<'a> {
    /// The plugin's rules.
    pub(crate) policy: &'a HttpPolicy,
    /// Checks a host against the plugin's grants (and writes the denial's audit record).
    pub(crate) granted: &'a dyn Fn(&str) -> Result<(), HostError>,
    /// Addresses the embedding program pinned for a name (`HostBuilder::resolve`).
    pub(crate) pinned: &'a dyn Fn(&str) -> Option<Vec<IpAddr>>,
    /// Writes an audit record.
    pub(crate) audit: &'a dyn Fn(&str, AuditOutcome, &str),
    /// The credential to attach, if the plugin asked for one.
    pub(crate) credential: Option<&'a Attached>,
}

/// A credential the host attaches to the hops whose host it may be sent to.
pub(crate) struct Attached {
    /// Its name in the policy.
    pub(crate) name: String,
    /// The header it is sent as.
    pub(crate) header: String,
    /// Its value: never in a message, a record or an answer.
    pub(crate) value: String,
    /// The hosts (globs) it may be sent to.
    pub(crate) hosts: Vec<String>,
}

/// Why a special-purpose address is refused, if it is one.
fn special(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if v4.is_unspecified() || v4.is_broadcast() || a == 0 || a >= 240 {
                Some("reserved")
            } else if v4.is_documentation() || (a == 198 && (18..20).contains(&b)) {
                Some("documentation or benchmarking")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return special(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(hi) << 16) | u32::from(lo),
                ))
            };
            // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d): the IPv4 address they
            // reach is what counts.
            if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
                return special(embedded(s[6], s[7])).or(Some("reserved"));
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return special(embedded(s[6], s[7]));
            }
            // 6to4 (2002:a.b.c.d::/48) reaches the IPv4 address in its prefix.
            if s[0] == 0x2002 {
                return special(embedded(s[1], s[2]));
            }
            // Local-use NAT64, Teredo and the old site-local range: refused outright.
            if (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) || (s[0] == 0x2001 && s[1] == 0) {
                return Some("reserved");
            }
            if s[0] & 0xffc0 == 0xfec0 {
                return Some("private");
            }
            let first = s[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("reserved")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first == 0x2001 && v6.segments()[1] == 0x0db8 {
                Some("documentation or benchmarking")
            } else {
                None
            }
        }
    }
}

/// The plugin's headers leave alone what the client sets, and hold no line break.
fn check_headers(head: &HttpHead) -> Result<(), HostError> {
    // The client sets these from the URL and the body; a plugin setting `Host` could reach
    // a virtual host its grant does not name.
    const SET_BY_THE_CLIENT: [&str; 5] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
    ];
    match head.headers.iter().find(|(n, v)| {
        SET_BY_THE_CLIENT.iter().any(|s| n.eq_ignore_ascii_case(s))
            || v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
    }) {
        Some((name, _)) => Err(host_error(
            HostErrorCode::BAD_REQUEST,
            "",
            &format!(
                "header {name:?} is set by the host's client, or its value holds a line break"
            ),
        )),
        None => Ok(()),
    }
}

fn refused(message: String) -> HostError {
    host_error(HostErrorCode::REFUSED, "", &message)
}

fn unreachable(message: String) -> HostError {
    host_error(HostErrorCode::UNREACHABLE, "", &message)
}

impl Outbound<'_> {
    /// Makes the request, following redirects; the last response's head and body.
    pub(crate) fn send(
        &self,
        head: &HttpHead,
        body: &[u8],
    ) -> Result<(HttpAnswer, Vec<u8>), HostError> {
        check_headers(head)?;
        let deadline = Instant::now() + self.policy.timeout;
        let mut url = url::Url::parse(&head.url).map_err(|e| {
            host_error(
                HostErrorCode::BAD_REQUEST,
                "",
                &format!("{:?} is not a URL: {e}", head.url),
            )
        })?;
        let (mut method, mut body) = (head.method.to_ascii_uppercase(), body);
        let mut hops = 0;
        loop {
            let (host, addresses) = self.check(&method, &url)?;
            let attach = self
                .credential
                .filter(|c| c.hosts.iter().any(|g| glob_match(g, &host)));
            if let (Some(c), None, 0) = (self.credential, attach, hops) {
                let message = format!(
                    "{method} {host}: credential {:?} may not be sent to this host",
                    c.name
                );
                (self.audit)(&host, AuditOutcome::HttpRefused, &message);
                return Err(refused(message));
            }
            let mut headers = head.headers.clone();
            if let Some(c) = attach {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&c.header));
                headers.push((c.header.clone(), c.value.clone()));
            }
            let (answer, response) =
                self.hop(&method, &url, &host, &addresses, &headers, body, deadline)?;
            let (status, headers) = (answer.status, &answer.headers);
            let location = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.clone());
            match location {
                Some(location) if (300..400).contains(&status) && status != 304 => {
                    if hops >= self.policy.max_redirects {
                        let message = format!(
                            "{method} {host}: more than {} redirects",
                            self.policy.max_redirects
                        );
                        (self.audit)(&host, AuditOutcome::HttpRefused, &message);
                        return Err(refused(message));
                    }
                    hops += 1;
                    url = url.join(&location).map_err(|e| {
                        let message = format!("{method} {host} redirected to {location:?}: {e}");
                        (self.audit)(&host, AuditOutcome::Http, &message);
                        unreachable(message)
                    })?;
                    if status == 303 {
                        (method, body) = ("GET".to_owned(), &[]);
                    }
                }
                _ => return Ok((answer, response)),
            }
        }
    }

    /// Checks one hop before it is made: the scheme, the grant, and every address of the
    /// host. The host and the addresses to connect to.
    fn check(&self, method: &str, url: &url::Url) -> Result<(String, Vec<IpAddr>), HostError> {
        let host = url
            .host_str()
            .map(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            })
            .ok_or_else(|| refused(format!("{url} names no host")))?;
        // The grant first: a host the plugin may not reach is a capability violation.
        (self.granted)(&host)?;
        let plain_allowed = || self.policy.allow_http.iter().any(|g| glob_match(g, &host));
        match url.scheme() {
            "https" => {}
            "http" if plain_allowed() => {}
            scheme => {
                let message = format!(
                    "{method} {host}: scheme {scheme:?} refused (https only, unless the policy's \
                     http.allow_http names the host)"
                );
                (self.audit)(&host, AuditOutcome::HttpRefused, &message);
                return Err(refused(message));
            }
        }
        let addresses = match host.parse::<IpAddr>() {
            Ok(address) => vec![address],
            Err(_) => match (self.pinned)(&host) {
                Some(addresses) => addresses,
                None => (host.as_str(), 0)
                    .to_socket_addrs()
                    .map_err(|e| {
                        let message = format!("{method} {host}: the name does not resolve: {e}");
                        (self.audit)(&host, AuditOutcome::Http, &message);
                        unreachable(message)
                    })?
                    .map(|a| a.ip())
                    .collect(),
            },
        };
        for address in &addresses {
            if let Some(kind) = special(*address) {
                if !self
                    .policy
                    .allow_private
                    .iter()
                    .any(|r| r.contains(*address))
                {
                    let message = format!(
                        "{method} {host}: it resolves to {address}, a {kind} address (refused \
                         unless the policy's http.allow_private names its range)"
                    );
                    (self.audit)(&host, AuditOutcome::HttpRefused, &message);
                    return Err(refused(message));
                }
            }
        }
        if addresses.is_empty() {
            let message = format!("{method} {host}: the name has no address");
            (self.audit)(&host, AuditOutcome::Http, &message);
            return Err(unreachable(message));
        }
        Ok((host, addresses))
    }

    /// Makes one request to the addresses checked; its status, headers and body.
    #[expect(
        clippy::too_many_arguments,
        reason = "one hop's whole state, used once"
    )]
    fn hop(
        &self,
        method: &str,
        url: &url::Url,
        host: &str,
        addresses: &[IpAddr],
        headers: &[(String, String)],
        body: &[u8],
        deadline: Instant,
    ) -> Result<(HttpAnswer, Vec<u8>), HostError> {
        let port = url.port_or_known_default().unwrap_or(443);
        let pinned: Vec<SocketAddr> = addresses
            .iter()
            .map(|a| SocketAddr::new(*a, port))
            .collect();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(remaining.max(Duration::from_millis(1)))
            .resolver(move |_: &str| Ok(pinned.clone()))
            .build();
        let mut request = agent.request(method, url.as_str());
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let failed = |what: String| {
            let message = format!("{method} {host}: {what}");
            (self.audit)(host, AuditOutcome::Http, &message);
            unreachable(message)
        };
        let response = match request.send_bytes(body) {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(e)) => return Err(failed(e.to_string())),
        };
        let status = response.status();
        let headers: Vec<(String, String)> = response
            .headers_names()
            .into_iter()
            .filter_map(|name| {
                let value = response.header(&name)?.to_owned();
                Some((name, value))
            })
            .collect();
        let mut bytes = Vec::new();
        let limit = self.policy.max_body;
        if let Err(e) = response
            .into_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
        {
            return Err(failed(format!("reading the body failed: {e}")));
        }
        if bytes.len() as u64 > limit {
            return Err(failed(format!(
                "{status}, the body is over the limit of {limit} bytes"
            )));
        }
        (self.audit)(
            host,
            AuditOutcome::Http,
            &format!("{method} {host} -> {status}, {} bytes", bytes.len()),
        );
        Ok((HttpAnswer { status, headers }, bytes))
    }
}

/// Serves one `http request` of the plugin `r`.
fn serve(r: &dyn Requester, payload: &[u8]) -> Result<Vec<u8>, HostError> {
    let host = r.host();
    let (head, body) = wire::unframe::<wire::HttpHead>(payload).map_err(bad_request)?;
    let policy = host.http_policy(r.plugin());
    let credential = match &head.credential {
        Some(name) => {
            r.require(CapabilityKind::Secrets, Some(name))?;
            let credential = host.credential(name).ok_or_else(|| {
                bad_request(format!(
                    "no credential {name:?}: the policy's [secrets] entry needs a header \
                             and hosts to be one"
                ))
            })?;
            let value = credential.source.read().map_err(|why| {
                bad_request(format!("credential {name:?} is not available: {why}"))
            })?;
            Some(Attached {
                name: name.clone(),
                header: credential.header,
                value,
                hosts: credential.hosts,
            })
        }
        None => None,
    };
    let granted = |h: &str| r.require(CapabilityKind::HttpOutbound, Some(h));
    let pinned = |name: &str| host.pinned(name);
    let audit = |h: &str, outcome, detail: &str| {
        host.audit().record(
            r.plugin().as_str(),
            r.generation(),
            &format!("http.outbound:{h}"),
            outcome,
            detail,
        );
    };
    let outbound = Outbound {
        policy: &policy,
        granted: &granted,
        pinned: &pinned,
        audit: &audit,
        credential: credential.as_ref(),
    };
    let (answer, body) = outbound.send(&head, body)?;
    wire::frame(&answer, &body).map_err(|e| bad_request(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_purpose_addresses_are_named_and_public_ones_pass() {
        for (address, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("169.254.169.254", "link-local"),
            ("224.0.0.1", "multicast"),
            ("0.0.0.0", "reserved"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("fd00::1", "private"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a00:1", "private"),
            ("::a00:1", "private"),
            ("2002:a00:1::1", "private"),
            ("2002:7f00:1::", "loopback"),
            ("64:ff9b:1::1", "reserved"),
            ("2001:0:4136:e378::1", "reserved"),
            ("fec0::1", "private"),
        ] {
            let address: IpAddr = address.parse().expect("address");
            assert_eq!(special(address), Some(kind), "{address}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert_eq!(special(public.parse().expect("address")), None, "{public}");
        }
    }
}
