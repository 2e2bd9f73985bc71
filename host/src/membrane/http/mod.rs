//! The `http` service: outbound HTTP made by the host for a plugin. Each hop (the request, then
//! every redirect) is checked before anything is sent (`check.rs`): the method and headers,
//! the host against the plugin's `http.outbound` grants, the scheme (`https`, or `http` where
//! the policy allows it for that host), and every address the name resolves to — no loopback,
//! private, link-local, multicast or other special-purpose address unless the policy allows
//! its range, and never an address the host program serves on. The name is resolved within
//! the call's time. The client then connects to the addresses checked — its resolver is this
//! module's, so there is no second lookup a rebinding name could answer differently. A
//! credential is attached only on the hops whose scheme, host and port it is for, and a client
//! certificate presented only in the TLS of those hops (`tls.rs`). Time and
//! body size are capped; every call, made or refused, leaves one audit record with the method,
//! host, status and size, never headers or bodies. A streamed response (`stream.rs`) takes the
//! same hops, and its body is read as it arrives.

mod check;
mod stream;
mod tls;

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::manifest::CapabilityKind;
use airlock_abi::wire::{self, HttpAnswer, HttpHead, Request};

use super::row::{raw, Grant};
use super::{bad_request, host_error};
use crate::policy::{Credential, HttpPolicy};
use crate::services::audit::AuditOutcome;
use crate::services::registry::{BuiltIn, Requester};

pub(crate) use stream::HttpStreams;
pub(crate) use tls::Identity;

/// One row per operation: `http request` and the three of a stream. Their payloads are frames
/// (a JSON head, then the body as it is) or a stream's id, and the grant is checked for each
/// hop's host.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    let mut rows = vec![raw(
        Request::HttpRequest,
        Grant::ByHandler(CapabilityKind::HttpOutbound),
        serve,
    )];
    rows.extend(stream::rows());
    rows
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
    /// The client certificate to present, if the plugin asked for one.
    pub(crate) identity: Option<&'a Identity>,
    /// The roots trusted besides the built-in ones (`[host] tls_roots`).
    pub(crate) roots: &'a [PathBuf],
    /// Where the host program serves (`Host::serving_on`): never reached.
    pub(crate) serving: &'a [SocketAddr],
}

/// A credential the host attaches to the hops it is for.
pub(crate) struct Attached {
    /// Its name in the policy.
    pub(crate) name: String,
    /// Its value: never in a message, a record or an answer.
    pub(crate) value: String,
    /// Its header, and where it may be sent.
    pub(crate) credential: Credential,
}

/// One hop, checked, as the client makes it.
pub(super) struct Hop<'h> {
    pub(super) method: &'h str,
    pub(super) url: &'h url::Url,
    pub(super) host: &'h str,
    /// The addresses checked, with the URL's port.
    pub(super) to: Vec<SocketAddr>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: &'h [u8],
    pub(super) deadline: Instant,
    /// The TLS settings, when the policy changes ureq's (roots, a client certificate).
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
}

/// The hop a request ended on: its method and host (for the audit record), the response's head
/// and what the exchange kept of its body.
pub(super) struct Landed<T> {
    pub(super) method: String,
    pub(super) host: String,
    pub(super) answer: HttpAnswer,
    pub(super) kept: T,
}

fn refused(message: String) -> HostError {
    host_error(HostErrorCode::REFUSED, "", &message)
}

fn unreachable(message: String) -> HostError {
    host_error(HostErrorCode::UNREACHABLE, "", &message)
}

/// Where a response sends the client next, if it is a redirect.
pub(super) fn redirect_to(answer: &HttpAnswer) -> Option<&str> {
    let status = answer.status;
    answer
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.as_str())
        .filter(|_| (300..400).contains(&status) && status != 304)
}

/// A client for `hop` that connects only to its addresses, with its TLS settings and no
/// redirects of its own.
pub(super) fn client(
    hop: &Hop<'_>,
    timeouts: impl FnOnce(ureq::AgentBuilder) -> ureq::AgentBuilder,
) -> ureq::Agent {
    let to = hop.to.clone();
    let mut builder = timeouts(ureq::AgentBuilder::new().redirects(0));
    if let Some(tls) = &hop.tls {
        builder = builder.tls_config(tls.clone());
    }
    builder.resolver(move |_: &str| Ok(to.clone())).build()
}

/// Sends `hop` with `agent`: the response, whatever its status.
pub(super) fn send(agent: &ureq::Agent, hop: &Hop<'_>) -> Result<ureq::Response, String> {
    let mut request = agent.request(hop.method, hop.url.as_str());
    for (name, value) in &hop.headers {
        request = request.set(name, value);
    }
    match request.send_bytes(hop.body) {
        Ok(response) | Err(ureq::Error::Status(_, response)) => Ok(response),
        Err(ureq::Error::Transport(e)) => {
            let said = e.to_string();
            Err(if said.contains("CertificateRequired") {
                format!(
                    "{said} (the server asks for a client certificate: name a [secrets] entry \
                     of kind client_certificate for this host and port in the request)"
                )
            } else {
                said
            })
        }
    }
}

/// A response's status and headers.
pub(super) fn head_of(response: &ureq::Response) -> HttpAnswer {
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            let value = response.header(&name)?.to_owned();
            Some((name, value))
        })
        .collect();
    HttpAnswer {
        status: response.status(),
        headers,
    }
}

impl Outbound<'_> {
    /// Makes the request, following redirects, each hop checked and made by `exchange` (which
    /// answers the response's head and what it keeps of the body).
    pub(super) fn follow<T>(
        &self,
        head: &HttpHead,
        body: &[u8],
        mut exchange: impl FnMut(&Hop<'_>) -> Result<(HttpAnswer, T), HostError>,
    ) -> Result<Landed<T>, HostError> {
        check::check_head(head)?;
        let deadline = Instant::now() + self.policy.timeout;
        let mut url = url::Url::parse(&head.url)
            .map_err(|e| bad_request(format!("{:?} is not a URL: {e}", head.url)))?;
        let (mut method, mut body) = (head.method.to_ascii_uppercase(), body);
        let mut hops = 0;
        loop {
            let (host, addresses) = self.check(&method, &url, deadline)?;
            let port = url.port_or_known_default().unwrap_or(443);
            let attach = self
                .credential
                .filter(|c| c.credential.may_be_sent(url.scheme(), &host, port));
            if let (Some(c), None, 0) = (self.credential, attach, hops) {
                let message = format!(
                    "{method} {host}: credential {:?} may not be sent to {}://{host}:{port} (its \
                     [secrets] entry names the hosts and ports it is for, over https unless \
                     allow_http = true)",
                    c.name,
                    url.scheme()
                );
                (self.audit)(&host, AuditOutcome::HttpRefused, &message);
                return Err(refused(message));
            }
            let tls = self.tls_for(&method, &url, &host, port, hops == 0)?;
            let mut headers = head.headers.clone();
            if let Some(c) = attach {
                let name = &c.credential.header;
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                headers.push((name.clone(), c.value.clone()));
            }
            let hop = Hop {
                method: &method,
                url: &url,
                host: &host,
                to: addresses
                    .iter()
                    .map(|a| SocketAddr::new(*a, port))
                    .collect(),
                headers,
                body,
                deadline,
                tls,
            };
            let (answer, kept) = exchange(&hop)?;
            let Some(location) = redirect_to(&answer) else {
                return Ok(Landed {
                    method,
                    host,
                    answer,
                    kept,
                });
            };
            if hops >= self.policy.max_redirects {
                let message = format!(
                    "{method} {host}: more than {} redirects",
                    self.policy.max_redirects
                );
                (self.audit)(&host, AuditOutcome::HttpRefused, &message);
                return Err(refused(message));
            }
            hops += 1;
            url = url.join(location).map_err(|e| {
                let message = format!("{method} {host} redirected to {location:?}: {e}");
                (self.audit)(&host, AuditOutcome::Http, &message);
                unreachable(message)
            })?;
            if answer.status == 303 {
                (method, body) = ("GET".to_owned(), &[]);
            }
        }
    }

    /// The TLS settings of a hop to `url`: `None` (ureq's own) unless it is https and the
    /// policy trusts more roots or the request's client certificate is for this host and port.
    /// A client certificate the first hop may not present refuses the request, as a
    /// credential does; on a redirect elsewhere it is not presented.
    fn tls_for(
        &self,
        method: &str,
        url: &url::Url,
        host: &str,
        port: u16,
        first: bool,
    ) -> Result<Option<Arc<rustls::ClientConfig>>, HostError> {
        let scheme = url.scheme();
        let present = self
            .identity
            .filter(|i| i.certificate.may_be_sent(scheme, host, port));
        if let (Some(i), None, true) = (self.identity, present, first) {
            let message = format!(
                "{method} {host}: client certificate {:?} may not be presented to \
                 {scheme}://{host}:{port} (its [secrets] entry names the hosts and ports it is \
                 for, over https)",
                i.name
            );
            (self.audit)(host, AuditOutcome::HttpRefused, &message);
            return Err(refused(message));
        }
        if scheme != "https" || (present.is_none() && self.roots.is_empty()) {
            return Ok(None);
        }
        tls::client_config(self.roots, present)
            .map(Some)
            .map_err(|why| {
                let message = format!("{method} {host}: {why}");
                (self.audit)(host, AuditOutcome::HttpRefused, &message);
                refused(message)
            })
    }

    /// Makes the request, following redirects; the last response's head and body.
    pub(crate) fn send(
        &self,
        head: &HttpHead,
        body: &[u8],
    ) -> Result<(HttpAnswer, Vec<u8>), HostError> {
        let landed = self.follow(head, body, |hop| self.fetch(hop))?;
        Ok((landed.answer, landed.kept))
    }

    /// Makes one hop, within what is left of the call's time; its head and body.
    fn fetch(&self, hop: &Hop<'_>) -> Result<(HttpAnswer, Vec<u8>), HostError> {
        let (method, host) = (hop.method, hop.host);
        let failed = |what: String| {
            let message = format!("{method} {host}: {what}");
            (self.audit)(host, AuditOutcome::Http, &message);
            unreachable(message)
        };
        let remaining = hop.deadline.saturating_duration_since(Instant::now());
        let agent = client(hop, |b| b.timeout(remaining.max(Duration::from_millis(1))));
        let response = send(&agent, hop).map_err(&failed)?;
        let answer = head_of(&response);
        let mut bytes = Vec::new();
        let limit = self.policy.max_body;
        if let Err(e) = response
            .into_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
        {
            return Err(failed(format!("reading the body failed: {e}")));
        }
        let status = answer.status;
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
        Ok((answer, bytes))
    }
}

/// Runs `f` with the outbound rules of the plugin `r` and the credential `head` asks for.
pub(super) fn outbound<T>(
    r: &dyn Requester,
    head: &HttpHead,
    f: impl FnOnce(&Outbound<'_>) -> Result<T, HostError>,
) -> Result<T, HostError> {
    let host = r.host();
    let policy = host.http_policy(r.plugin());
    let (mut credential, mut identity) = (None, None);
    if let Some(name) = &head.credential {
        r.require(CapabilityKind::Secrets, Some(name))?;
        if let Some(certificate) = host.client_certificate(name) {
            identity = Some(Identity {
                name: name.clone(),
                certificate,
            });
        } else {
            let found = host.credential(name).ok_or_else(|| {
                bad_request(format!(
                    "no credential {name:?}: the policy's [secrets] entry needs a header and \
                     hosts to be one, or kind = \"client_certificate\", cert, key and hosts"
                ))
            })?;
            let value = found.source.read().map_err(|why| {
                bad_request(format!("credential {name:?} is not available: {why}"))
            })?;
            credential = Some(Attached {
                name: name.clone(),
                value,
                credential: found,
            });
        }
    }
    let roots = host.tls_roots();
    let granted = |h: &str| r.require(CapabilityKind::HttpOutbound, Some(h));
    let pinned = |name: &str| host.pinned(name);
    let audit = |h: &str, outcome, detail: &str| audit(r, h, outcome, detail);
    let serving = host.serving();
    f(&Outbound {
        policy: &policy,
        granted: &granted,
        pinned: &pinned,
        audit: &audit,
        credential: credential.as_ref(),
        identity: identity.as_ref(),
        roots: &roots,
        serving: &serving,
    })
}

/// Writes an audit record of the plugin `r`'s outbound HTTP to `host`.
fn audit(r: &dyn Requester, host: &str, outcome: AuditOutcome, detail: &str) {
    r.host().audit().record(
        r.plugin().as_str(),
        r.generation(),
        &format!("http.outbound:{host}"),
        outcome,
        detail,
    );
}

/// Serves one `http request` of the plugin `r`.
fn serve(r: &dyn Requester, payload: &[u8]) -> Result<Vec<u8>, HostError> {
    let (head, body) = wire::unframe::<HttpHead>(payload).map_err(bad_request)?;
    let (answer, body) = outbound(r, &head, |outbound| outbound.send(&head, body))?;
    wire::frame(&answer, &body).map_err(|e| bad_request(e.to_string()))
}
