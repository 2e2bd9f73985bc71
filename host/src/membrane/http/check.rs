//! What is checked before a hop is made: the method and the headers the plugin wrote, the
//! scheme, the grant, and every address the host name resolves to — no special-purpose address
//! the policy does not allow, and never an address the host program serves on. The name is
//! resolved within the hop's deadline.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::manifest::glob_match;
use airlock_abi::wire::{is_http_token, HttpHead};

use super::{refused, unreachable, Outbound};
use crate::membrane::host_error;
use crate::services::audit::AuditOutcome;

/// Why a special-purpose address is refused, if it is one.
pub(super) fn special(address: IpAddr) -> Option<&'static str> {
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

/// The plugin's method is an HTTP token, and its headers leave alone what the client sets and
/// hold no line break. The plugin's side checks the method too; this is for a plugin that
/// goes around it.
pub(super) fn check_head(head: &HttpHead) -> Result<(), HostError> {
    if !is_http_token(&head.method) {
        return Err(host_error(
            HostErrorCode::BAD_REQUEST,
            "",
            &format!(
                "the HTTP method {:?} is not a token: use letters, digits and !#$%&'*+-.^_`|~ \
                 only (GET, POST, PROPFIND), with no space or line break",
                head.method
            ),
        ));
    }
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
            || !is_http_token(n)
            || v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
    }) {
        Some((name, _)) => Err(host_error(
            HostErrorCode::BAD_REQUEST,
            "",
            &format!(
                "header {name:?} is set by the host's client, is not a token, or its value holds \
                 a line break: leave it out or write it plainly"
            ),
        )),
        None => Ok(()),
    }
}

/// The most name lookups in flight at once, over all plugins: a lookup that overran its
/// deadline keeps its thread until the system resolver gives up, and this bounds how many.
const MAX_RESOLVING: usize = 64;

/// Name lookups in flight.
static RESOLVING: AtomicUsize = AtomicUsize::new(0);

/// Runs `work` on a thread of its own and waits for it until `deadline`: `Err` with the reason
/// if it did not finish in time or could not start. The system resolver cannot be interrupted,
/// so a lookup that overruns is left to finish on its own thread (its answer is dropped); at
/// most [`MAX_RESOLVING`] run at once.
pub(super) fn within<T: Send + 'static>(
    deadline: Instant,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    if RESOLVING.fetch_add(1, Ordering::AcqRel) >= MAX_RESOLVING {
        RESOLVING.fetch_sub(1, Ordering::AcqRel);
        return Err(format!(
            "{MAX_RESOLVING} name lookups are in flight already; try again later"
        ));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("airlock-resolve".to_owned())
        .spawn(move || {
            let answer = work();
            RESOLVING.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(answer);
        });
    if let Err(e) = spawned {
        RESOLVING.fetch_sub(1, Ordering::AcqRel);
        return Err(format!("no thread for the name lookup: {e}"));
    }
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .map_err(|_| "the name did not resolve within the time limit (timeout_ms)".to_owned())
}

/// Whether `address` is one of this machine's: loopback, unspecified, or one a socket can be
/// bound to.
fn is_local(address: IpAddr) -> bool {
    address.is_loopback()
        || address.is_unspecified()
        || UdpSocket::bind(SocketAddr::new(address, 0)).is_ok()
}

/// The address the host program serves on that a hop to `address:port` would reach, if any.
pub(super) fn serving_at(serving: &[SocketAddr], address: IpAddr, port: u16) -> Option<SocketAddr> {
    let address = address.to_canonical();
    serving.iter().copied().find(|at| {
        at.port() == port
            && (at.ip().to_canonical() == address
                || (at.ip().is_unspecified() && is_local(address)))
    })
}

impl Outbound<'_> {
    /// Checks one hop before it is made: the scheme, the grant, and every address of the
    /// host. The host and the addresses to connect to.
    pub(super) fn check(
        &self,
        method: &str,
        url: &url::Url,
        deadline: Instant,
    ) -> Result<(String, Vec<IpAddr>), HostError> {
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
        let refuse = |message: String| {
            (self.audit)(&host, AuditOutcome::HttpRefused, &message);
            refused(message)
        };
        let plain_allowed = || self.policy.allow_http.iter().any(|g| glob_match(g, &host));
        match url.scheme() {
            "https" => {}
            "http" if plain_allowed() => {}
            scheme => {
                return Err(refuse(format!(
                    "{method} {host}: scheme {scheme:?} refused (https only, unless the policy's \
                     http.allow_http names the host)"
                )))
            }
        }
        let addresses = self.resolve(method, &host, deadline)?;
        let port = url.port_or_known_default().unwrap_or(443);
        for address in &addresses {
            if let Some(kind) = special(*address) {
                if !self
                    .policy
                    .allow_private
                    .iter()
                    .any(|r| r.contains(*address))
                {
                    return Err(refuse(format!(
                        "{method} {host}: it resolves to {address}, a {kind} address (refused \
                         unless the policy's http.allow_private names its range)"
                    )));
                }
            }
            if let Some(at) = serving_at(self.serving, *address, port) {
                return Err(refuse(format!(
                    "{method} {host}: {} is where the host program serves ({at}); a plugin may \
                     not call it, whatever the policy allows",
                    SocketAddr::new(*address, port)
                )));
            }
        }
        Ok((host, addresses))
    }

    /// The addresses of `host`: itself if it is one, those the program pinned, or the system
    /// resolver's answer within the deadline.
    fn resolve(
        &self,
        method: &str,
        host: &str,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, HostError> {
        let failed = |what: String| {
            let message = format!("{method} {host}: {what}");
            (self.audit)(host, AuditOutcome::Http, &message);
            unreachable(message)
        };
        let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(address) => vec![address],
            Err(_) => match (self.pinned)(host) {
                Some(addresses) => addresses,
                None => {
                    let name = host.to_owned();
                    within(deadline, move || {
                        (name.as_str(), 0)
                            .to_socket_addrs()
                            .map(|a| a.map(|a| a.ip()).collect::<Vec<_>>())
                    })
                    .map_err(&failed)?
                    .map_err(|e| failed(format!("the name does not resolve: {e}")))?
                }
            },
        };
        if addresses.is_empty() {
            return Err(failed("the name has no address".to_owned()));
        }
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

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

    #[test]
    fn a_wildcard_listener_is_reached_through_any_local_address_on_its_port() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let exact: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert_eq!(serving_at(&[exact], ip("127.0.0.1"), 8080), Some(exact));
        assert_eq!(
            serving_at(&[exact], ip("::ffff:127.0.0.1"), 8080),
            Some(exact)
        );
        assert_eq!(serving_at(&[exact], ip("127.0.0.1"), 8081), None);
        assert_eq!(serving_at(&[exact], ip("127.0.0.2"), 8080), None);
        let any: SocketAddr = "0.0.0.0:9090".parse().expect("addr");
        for local in ["127.0.0.1", "127.0.0.9", "0.0.0.0", "::1"] {
            assert_eq!(serving_at(&[any], ip(local), 9090), Some(any), "{local}");
        }
        assert_eq!(serving_at(&[any], ip("127.0.0.1"), 9091), None);
        assert_eq!(serving_at(&[any], ip("93.184.216.34"), 9090), None);
    }

    /// A real blocking wait (a read from a peer that never answers) is cut at the deadline; the
    /// system resolver is waited for the same way.
    #[test]
    fn work_that_does_not_finish_in_time_ends_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
        let at = listener.local_addr().expect("addr");
        let started = Instant::now();
        let answer = within(started + Duration::from_millis(200), move || {
            let mut silent = TcpStream::connect(at).expect("connected");
            silent.set_read_timeout(Some(Duration::from_secs(20))).ok();
            let mut byte = [0u8; 1];
            silent.read(&mut byte).map_err(|e| e.to_string())
        });
        let err = answer.expect_err("it overran");
        assert!(err.contains("within the time limit"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10), "bounded");
        drop(listener);
        let quick = within(Instant::now() + Duration::from_secs(10), || 7);
        assert_eq!(quick, Ok(7));
    }
}
