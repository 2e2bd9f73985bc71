//! Streamed responses: `http stream_open` takes the same checked hops as `http request`
//! (redirects, credential rules and audit records included) and answers once the last
//! response's head is in; its body is then read by a thread of its own into a channel that
//! holds two chunks at most, and `http stream_next` takes them one by one (each at most
//! [`MAX_HTTP_CHUNK`] bytes; the whole body has no limit). The server's silence past the
//! policy's `stream_idle` ends the stream with an error. A plugin's streams live in its context
//! entry: at most [`MAX_STREAMS`] at once, closed when the context is revoked, each writing one
//! audit record when it ends, with the bytes it carried. The reading thread stops at its next
//! read once its stream is gone.

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::manifest::CapabilityKind;
use airlock_abi::wire::{
    self, HttpAnswer, HttpHead, HttpStreamHead, HttpStreamId, Request, MAX_HTTP_CHUNK,
};
use parking_lot::Mutex;

use super::{client, head_of, outbound, redirect_to, refused, send, unreachable, Hop, Outbound};
use crate::membrane::context::{self, ContextEntry};
use crate::membrane::row::{raw, row, Bytes, Grant};
use crate::membrane::{bad_request, host_error};
use crate::services::audit::AuditOutcome;
use crate::services::registry::{BuiltIn, Requester};
use crate::services::HostServices;

/// The most streams one plugin instance has open at once.
pub(crate) const MAX_STREAMS: usize = 8;

/// How often a wait for the next chunk looks whether the plugin is being torn down.
const SLICE: Duration = Duration::from_millis(100);

/// The rows of a stream's three operations.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    vec![
        raw(
            Request::HttpStreamOpen,
            Grant::ByHandler(CapabilityKind::HttpOutbound),
            open,
        ),
        row(
            Request::HttpStreamNext,
            Grant::ByHandler(CapabilityKind::HttpOutbound),
            next,
        ),
        row(Request::HttpStreamClose, Grant::Free, close),
    ]
}

/// What the reading thread hands over.
enum Piece {
    Chunk(Vec<u8>),
    End,
    Failed(String),
}

/// The open streams of one plugin instance (a field of its context entry).
#[derive(Default)]
pub(crate) struct HttpStreams {
    open: Mutex<HashMap<u64, Arc<Mutex<Stream>>>>,
    last: AtomicU64,
}

/// One open stream. Dropped (ended, closed, or with the plugin's context), it writes its audit
/// record.
struct Stream {
    pieces: Receiver<Piece>,
    method: String,
    host: String,
    status: u16,
    bytes: u64,
    /// How it ended, for the record.
    ended: &'static str,
    failure: Option<String>,
    services: Arc<dyn HostServices>,
    plugin: String,
    generation: u64,
}

impl Drop for Stream {
    fn drop(&mut self) {
        let (method, host, status, bytes) = (&self.method, &self.host, self.status, self.bytes);
        let how = self.failure.as_deref().unwrap_or(self.ended);
        self.services.audit().record(
            &self.plugin,
            self.generation,
            &format!("http.outbound:{host}"),
            AuditOutcome::Http,
            &format!("{method} {host} -> {status}, streamed {bytes} bytes, {how}"),
        );
    }
}

impl HttpStreams {
    fn get(&self, id: u64) -> Result<Arc<Mutex<Stream>>, HostError> {
        self.open.lock().get(&id).cloned().ok_or_else(|| {
            bad_request(format!(
                "no open stream {id}: it ended, was closed, or was never opened by this plugin"
            ))
        })
    }

    fn remove(&self, id: u64) -> bool {
        // Dropped outside the lock: its record is written then.
        let removed = self.open.lock().remove(&id);
        removed.is_some()
    }

    fn full(&self) -> Option<HostError> {
        (self.open.lock().len() >= MAX_STREAMS).then(|| {
            refused(format!(
                "{MAX_STREAMS} streams are open already: read one to its end or drop it first"
            ))
        })
    }
}

/// The requesting plugin's context entry.
fn entry_of(r: &dyn Requester) -> Result<Arc<ContextEntry>, HostError> {
    context::entry(r.token()).ok_or_else(|| {
        host_error(
            HostErrorCode::REVOKED,
            "",
            "the plugin's context is revoked",
        )
    })
}

/// Makes one hop of a stream: the request is sent and its head read on a thread of its own,
/// waited for within the call's time; the thread then reads the body into the channel it
/// answers with.
fn start(
    outbound: &Outbound<'_>,
    hop: &Hop<'_>,
    idle: Duration,
) -> Result<(HttpAnswer, Receiver<Piece>), HostError> {
    let (method, host) = (hop.method, hop.host);
    let failed = |what: String| {
        let message = format!("{method} {host}: {what}");
        (outbound.audit)(host, AuditOutcome::Http, &message);
        unreachable(message)
    };
    let remaining = hop
        .deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let agent = client(hop, |b| {
        b.timeout_connect(remaining)
            .timeout_write(remaining)
            .timeout_read(idle)
    });
    let owned = (
        hop.method.to_owned(),
        hop.url.clone(),
        hop.host.to_owned(),
        hop.to.clone(),
        hop.headers.clone(),
        hop.body.to_vec(),
    );
    let (head_tx, head_rx) = sync_channel::<Result<HttpAnswer, String>>(1);
    let (tx, rx) = sync_channel::<Piece>(2);
    let spawned = std::thread::Builder::new()
        .name("airlock-http-stream".to_owned())
        .spawn(move || {
            let (method, url, host, to, headers, body) = owned;
            let hop = Hop {
                method: &method,
                url: &url,
                host: &host,
                to,
                headers,
                body: &body,
                deadline: Instant::now(),
                // The agent already holds the hop's TLS settings.
                tls: None,
            };
            let response = match send(&agent, &hop) {
                Ok(response) => response,
                Err(e) => {
                    let _ = head_tx.send(Err(e));
                    return;
                }
            };
            if head_tx.send(Ok(head_of(&response))).is_ok() {
                pump(response.into_reader(), &tx, idle);
            }
        });
    spawned.map_err(|e| failed(format!("no thread to read the stream: {e}")))?;
    let answer = match head_rx.recv_timeout(remaining) {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Err(failed(e)),
        Err(_) => {
            return Err(failed(
                "no response within the time limit (timeout_ms)".into(),
            ))
        }
    };
    if redirect_to(&answer).is_some() {
        let status = answer.status;
        (outbound.audit)(
            host,
            AuditOutcome::Http,
            &format!("{method} {host} -> {status}, redirected"),
        );
    }
    Ok((answer, rx))
}

/// Reads `body` into `tx` chunk by chunk until its end, an error, or the stream is gone.
fn pump(mut body: impl Read, tx: &SyncSender<Piece>, idle: Duration) {
    let mut buffer = vec![0u8; MAX_HTTP_CHUNK];
    loop {
        let piece = match body.read(&mut buffer) {
            Ok(0) => Piece::End,
            Ok(n) => Piece::Chunk(buffer[..n].to_vec()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                Piece::Failed(format!(
                    "the server sent nothing for {} ms (the policy's http.stream_idle_ms)",
                    idle.as_millis()
                ))
            }
            Err(e) => Piece::Failed(format!("reading the body failed: {e}")),
        };
        let last = !matches!(piece, Piece::Chunk(_));
        if tx.send(piece).is_err() || last {
            return;
        }
    }
}

/// `http stream_open`: the hops, then the stream, kept in the plugin's context.
fn open(r: &dyn Requester, payload: &[u8]) -> Result<Vec<u8>, HostError> {
    let entry = entry_of(r)?;
    let services = entry
        .host
        .clone()
        .ok_or_else(|| host_error(HostErrorCode::REVOKED, "", "the host has shut down"))?;
    let streams = &entry.http_streams;
    if let Some(full) = streams.full() {
        return Err(full);
    }
    let (head, body) = wire::unframe::<HttpHead>(payload).map_err(bad_request)?;
    let idle = r.host().http_policy(r.plugin()).stream_idle;
    let landed = outbound(r, &head, |outbound| {
        outbound.follow(&head, body, |hop| start(outbound, hop, idle))
    })?;
    let stream = Stream {
        pieces: landed.kept,
        method: landed.method,
        host: landed.host,
        status: landed.answer.status,
        bytes: 0,
        ended: "closed before its end",
        failure: None,
        services,
        plugin: r.plugin().to_string(),
        generation: r.generation(),
    };
    let id = streams.last.fetch_add(1, Ordering::Relaxed) + 1;
    {
        let mut open = streams.open.lock();
        if open.len() >= MAX_STREAMS {
            drop(open);
            drop(stream);
            return Err(streams
                .full()
                .unwrap_or_else(|| refused("too many streams".into())));
        }
        open.insert(id, Arc::new(Mutex::new(stream)));
    }
    super::super::row::json(&HttpStreamHead {
        stream: id,
        status: landed.answer.status,
        headers: landed.answer.headers,
    })
}

/// `http stream_next`: the next chunk, empty at the end; an error ends the stream.
fn next(r: &dyn Requester, id: HttpStreamId) -> Result<Bytes, HostError> {
    let entry = entry_of(r)?;
    let streams = &entry.http_streams;
    let stream = streams.get(id.stream)?;
    let mut stream = stream.lock();
    if let Err(denied) = r.require(CapabilityKind::HttpOutbound, Some(&stream.host)) {
        stream.failure = Some("ended: the grant for the host was revoked".to_owned());
        streams.remove(id.stream);
        return Err(denied);
    }
    loop {
        match stream.pieces.recv_timeout(SLICE) {
            Ok(Piece::Chunk(chunk)) => {
                stream.bytes += chunk.len() as u64;
                return Ok(Bytes(chunk));
            }
            Ok(Piece::End) => {
                stream.ended = "to its end";
                streams.remove(id.stream);
                return Ok(Bytes(Vec::new()));
            }
            Ok(Piece::Failed(why)) => {
                let message = format!("{} {}: {why}", stream.method, stream.host);
                stream.failure = Some(format!("ended: {why}"));
                streams.remove(id.stream);
                return Err(unreachable(message));
            }
            // A revocation waits for the calls in flight: this one ends within a slice.
            Err(RecvTimeoutError::Timeout) if !r.closing() && !entry.is_revoked() => {}
            Err(RecvTimeoutError::Timeout) => {
                streams.remove(id.stream);
                return Err(host_error(
                    HostErrorCode::REVOKED,
                    "",
                    "the plugin is being torn down: its streams are closed",
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                stream.failure = Some("ended: its reader stopped".to_owned());
                streams.remove(id.stream);
                return Err(unreachable(format!(
                    "{} {}: the stream's reader stopped",
                    stream.method, stream.host
                )));
            }
        }
    }
}

/// `http stream_close`: `true` if the stream was open.
fn close(r: &dyn Requester, id: HttpStreamId) -> Result<bool, HostError> {
    Ok(entry_of(r)?.http_streams.remove(id.stream))
}
