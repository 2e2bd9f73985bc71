//! Streamed calls: an action emits chunks (`ctx.emit(..)`) before its final answer, and the
//! caller receives them in order as they come (`host.call(..).on_chunk(..)`).
//!
//! The call runs on a thread of its own; the caller's thread takes the chunks from a bounded
//! queue of [`STREAM_BUFFER`] and hands each to the caller's function. A plugin that emits
//! faster than the caller takes waits in `emit` for room: a slow consumer slows the producer,
//! and memory holds at most the queue's chunks (as the bytes the plugin sent: JSON is parsed
//! on the caller's side), whatever the stream's length. The sink is the call thread's, for the
//! streamed plugin's own call only: the plugins it calls, hooks, events and the plugin's own
//! helper threads see no stream, and what they emit is discarded. A cancelled token, a caller
//! that stopped taking, or the call being cancelled for any other reason (its timeout, its
//! plugin torn down) makes `emit` answer `cancelled`, also while it waits for room.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use airlock_abi::manifest::PluginId;

use super::cancel::CancelToken;
use super::{Frame, Stream};

/// How many chunks a streamed call may emit ahead of its caller.
pub const STREAM_BUFFER: usize = 16;

/// The most bytes one chunk may carry.
pub const MAX_CHUNK: usize = 1 << 20;

/// One partial result of a streamed call.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// A JSON value (`ctx.emit(&value)`).
    Json(serde_json::Value),
    /// Bytes (`ctx.emit_bytes(..)`).
    Bytes(Vec<u8>),
}

/// A chunk in the queue: what the plugin sent, checked.
enum Raw {
    Json(Vec<u8>),
    Bytes(Vec<u8>),
}

impl Raw {
    fn into_chunk(self) -> Chunk {
        match self {
            // Checked as JSON when it was emitted.
            Self::Json(bytes) => {
                Chunk::Json(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
            }
            Self::Bytes(bytes) => Chunk::Bytes(bytes),
        }
    }
}

/// The stream of the call a thread is running, if it is streamed.
pub(crate) struct Sink {
    plugin: PluginId,
    chunks: SyncSender<Raw>,
    token: CancelToken,
}

/// What `emit` does with a chunk.
pub(crate) enum Emitted {
    /// Taken by the caller's queue.
    Sent,
    /// No stream: the call is not streamed (or it is a call made from the streamed one).
    Discarded,
    /// The caller cancelled the call or stopped taking chunks.
    Cancelled,
}

/// Whether a chunk's bytes are JSON, without building the value.
pub(crate) fn is_json(bytes: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Emits a chunk (JSON bytes already checked, or bytes) from `plugin`'s call on this thread:
/// waits for room in the caller's queue, checking the caller's token and `cancelled` (the
/// call's other reasons to stop) while it waits.
pub(crate) fn emit(
    plugin: &PluginId,
    json: bool,
    bytes: Vec<u8>,
    cancelled: impl Fn() -> bool,
) -> Emitted {
    let sink = super::read(|frames| {
        let innermost = frames.iter().rev().find_map(|f| match &f.stream {
            Stream::Inherit => None,
            Stream::Hidden => Some(None),
            Stream::To(sink) => Some(Some(sink)),
        });
        innermost
            .flatten()
            .filter(|sink| sink.plugin == *plugin)
            .map(|sink| (sink.chunks.clone(), sink.token.clone()))
    });
    let Some((chunks, token)) = sink else {
        return Emitted::Discarded;
    };
    let mut chunk = if json {
        Raw::Json(bytes)
    } else {
        Raw::Bytes(bytes)
    };
    let mut pause = Duration::from_micros(20);
    loop {
        if token.is_cancelled() || cancelled() {
            return Emitted::Cancelled;
        }
        match chunks.try_send(chunk) {
            Ok(()) => return Emitted::Sent,
            Err(TrySendError::Disconnected(_)) => return Emitted::Cancelled,
            Err(TrySendError::Full(back)) => {
                chunk = back;
                // The caller is behind: wait for it, looking again at most every 2 ms.
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(2));
            }
        }
    }
}

/// Runs `call` on a thread of its own as a streamed call of `plugin`, in `frame` with the
/// stream added, handing each chunk it emits to `on_chunk` on this thread, in order, as it
/// comes; answers what `call` answered. A panic in `on_chunk` cancels the call, waits for it,
/// and goes on unwinding here.
///
/// # Errors
///
/// No thread could be started for the call (it was not made).
pub(crate) fn streamed<R: Send>(
    plugin: &PluginId,
    mut frame: Frame,
    token: &CancelToken,
    call: impl FnOnce() -> R + Send,
    mut on_chunk: impl FnMut(Chunk),
) -> std::io::Result<R> {
    let (chunks, taken): (SyncSender<Raw>, Receiver<Raw>) = sync_channel(STREAM_BUFFER);
    let sink = Sink {
        plugin: plugin.clone(),
        chunks,
        token: token.clone(),
    };
    // The call's span is a child of the caller's, on the thread the call runs on.
    let span = super::trace::carried();
    std::thread::scope(|scope| {
        let running = std::thread::Builder::new()
            .name(format!("airlock-stream-{plugin}"))
            .spawn_scoped(scope, move || {
                let _in = span.enter();
                frame.stream = Stream::To(sink);
                let _streaming = super::enter(frame);
                call()
            })?;
        let taking = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
            match taken.recv_timeout(Duration::from_millis(20)) {
                Ok(chunk) => on_chunk(chunk.into_chunk()),
                Err(RecvTimeoutError::Timeout) if token.is_cancelled() => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }));
        if taking.is_err() {
            token.cancel();
        }
        // The call's thread sees the queue closed (or the token) and stops emitting.
        drop(taken);
        let answered = running.join();
        match (taking, answered) {
            (Err(panic), _) | (Ok(()), Err(panic)) => std::panic::resume_unwind(panic),
            (Ok(()), Ok(answer)) => Ok(answer),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PluginId {
        PluginId::new(s).expect("id")
    }

    #[test]
    fn chunks_arrive_in_order_and_only_from_the_streamed_plugins_own_call() {
        let token = CancelToken::new();
        let mut got = Vec::new();
        let answer = streamed(
            &id("a"),
            Frame::default(),
            &token,
            || {
                for i in 0..100 {
                    assert!(matches!(
                        emit(&id("a"), true, i.to_string().into_bytes(), || false),
                        Emitted::Sent
                    ));
                }
                // Another plugin, and a call the streamed one makes, emit nowhere.
                assert!(matches!(
                    emit(&id("b"), false, vec![1], || false),
                    Emitted::Discarded
                ));
                let hidden = super::super::enter(Frame {
                    stream: Stream::Hidden,
                    ..Frame::default()
                });
                assert!(matches!(
                    emit(&id("a"), false, vec![2], || false),
                    Emitted::Discarded
                ));
                drop(hidden);
                7
            },
            |chunk| got.push(chunk),
        )
        .expect("thread");
        assert_eq!(answer, 7);
        let expected: Vec<Chunk> = (0..100).map(|i| Chunk::Json(i.into())).collect();
        assert_eq!(got, expected);
        // Outside a streamed call nothing is streamed.
        assert!(matches!(
            emit(&id("a"), true, b"0".to_vec(), || false),
            Emitted::Discarded
        ));
    }

    #[test]
    fn a_consumer_that_cancels_stops_the_producer_waiting_for_room() {
        let token = CancelToken::new();
        let mut taken = 0;
        let outcome = streamed(
            &id("a"),
            Frame::default(),
            &token,
            || {
                let mut sent = 0;
                loop {
                    match emit(&id("a"), false, vec![0; 10], || false) {
                        Emitted::Sent => sent += 1,
                        Emitted::Cancelled => return sent,
                        Emitted::Discarded => unreachable!("streamed"),
                    }
                }
            },
            |_| {
                taken += 1;
                if taken == 5 {
                    token.cancel();
                    // A slow consumer: the producer waits in emit meanwhile.
                    std::thread::sleep(Duration::from_millis(30));
                }
            },
        )
        .expect("thread");
        // The producer stopped, having got at most a queue's worth ahead.
        assert!(outcome <= 5 + STREAM_BUFFER + 1, "{outcome}");
    }
}
