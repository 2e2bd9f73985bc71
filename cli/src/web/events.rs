//! `GET /api/events`: server-sent events for the page — each audit record as it is appended
//! (`event: audit`, its `seq` as the event's id, so a browser that reconnects resumes after
//! the last one it had), the plugins' states and generations when one changes
//! (`event: plugins`), and the calls waiting for approval when they change
//! (`event: approvals`). Records the audit ring moved past before they were sent are named by
//! `event: skipped`.
//!
//! What a client can make the console hold is bounded: at most [`MAX_STREAMS`] streams at
//! once (`503` past it), and per stream [`BUFFER`] events waiting; a client that reads none of
//! them for [`SLOW`] is dropped (its browser reconnects and resumes from its last id).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::Response;
use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::{api, json, Answer, Served};

/// Event streams open at once.
pub(super) const MAX_STREAMS: usize = 16;
/// Events waiting for one slow client.
const BUFFER: usize = 64;
/// How long a client may leave its buffer full before it is dropped.
const SLOW: Duration = Duration::from_secs(5);
/// How often the audit log is looked at for news.
const POLL: Duration = Duration::from_millis(200);
/// How often the plugins and the approvals are (every this many polls: once a second).
const STATE_EVERY: u64 = 5;
/// How often a quiet stream says it is alive.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The streams open.
pub(super) struct Streams(Arc<Semaphore>);

impl Default for Streams {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(MAX_STREAMS)))
    }
}

/// Opens a stream, following the audit log after `Last-Event-ID` (or `?after=SEQ`), else from
/// now.
pub(super) fn stream(console: &Arc<Served>, headers: &HeaderMap, query: Option<&str>) -> Answer {
    let Ok(permit) = Arc::clone(&console.streams.0).try_acquire_owned() else {
        let message = format!("{MAX_STREAMS} event streams are open already");
        return json(503, &serde_json::json!({ "ok": false, "message": message }));
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .or_else(|| {
            api::pairs(query.unwrap_or(""))
                .find(|(k, _)| k == "after")
                .and_then(|(_, v)| v.parse().ok())
        });
    let after = resume.or_else(|| console.host.audit().count().checked_sub(1));
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(follow(Arc::clone(console), after, tx, permit));
    let mut answer = Response::new(Events(rx).boxed());
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    answer
}

/// Sends what changes until the client goes, is too slow, or the console stops.
async fn follow(
    console: Arc<Served>,
    mut after: Option<u64>,
    tx: mpsc::Sender<Bytes>,
    _open: OwnedSemaphorePermit,
) {
    let send = |event: String| {
        let tx = tx.clone();
        async move {
            matches!(
                tokio::time::timeout(SLOW, tx.send(Bytes::from(event))).await,
                Ok(Ok(()))
            )
        }
    };
    if !send("retry: 2000\n\n".to_owned()).await {
        return;
    }
    let mut stop = console.stop.clone();
    let (mut plugins, mut approvals) = (Value::Null, Value::Null);
    let mut quiet = Duration::ZERO;
    for round in 0u64.. {
        let mut events = Vec::new();
        for record in console.host.audit().since(after) {
            let expected = after.map_or(record.seq, |a| a + 1);
            if record.seq > expected {
                let missed = record.seq - expected;
                events.push(format!("event: skipped\ndata: {{\"missed\":{missed}}}\n\n"));
            }
            after = Some(record.seq);
            let data = serde_json::to_string(&record).unwrap_or_default();
            events.push(format!(
                "event: audit\nid: {}\ndata: {data}\n\n",
                record.seq
            ));
        }
        if round % STATE_EVERY == 0 {
            let now: Value = console
                .host
                .plugins()
                .iter()
                .map(|p| serde_json::json!({"id": p.id, "state": p.state.to_string(), "generation": p.generation}))
                .collect();
            if now != plugins {
                events.push(format!("event: plugins\ndata: {now}\n\n"));
                plugins = now;
            }
            let now = Value::from(api::approvals(&console));
            if now != approvals {
                events.push(format!("event: approvals\ndata: {now}\n\n"));
                approvals = now;
            }
        }
        if events.is_empty() && quiet >= KEEPALIVE {
            events.push(": alive\n\n".to_owned());
        }
        quiet = if events.is_empty() {
            quiet + POLL
        } else {
            Duration::ZERO
        };
        for event in events {
            if !send(event).await {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|stop| *stop) => return,
            () = tx.closed() => return,
        }
    }
}

/// The body of an event stream: what [`follow`] sends, as it comes.
struct Events(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|event| event.map(|e| Ok(Frame::data(e))))
    }
}
