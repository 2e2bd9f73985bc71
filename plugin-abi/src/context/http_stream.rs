//! A response body read as it arrives ([`Http::stream`]): server-sent events, NDJSON, or a body
//! too long to hold, relayed chunk by chunk (to the plugin's own caller with
//! [`Context::emit_bytes`], for one).

use super::http::{Http, HttpRequest};
use super::Context;
use crate::error::ContextError;
use crate::wire::{HttpStreamHead, HttpStreamId, Request};

impl Http<'_> {
    /// Sends `request` like [`Http::send`] (the same grants, schemes, addresses, redirects and
    /// credential rules, hop by hop) and answers once the last response's head is in: its body
    /// is then read chunk by chunk, as it arrives, with [`HttpStream::next_chunk`] (or as an
    /// iterator). There is no limit on the whole body, only on each chunk
    /// ([`MAX_HTTP_CHUNK`](crate::wire::MAX_HTTP_CHUNK)); the stream ends with an error when the server sends nothing
    /// for the policy's idle time (`http.stream_idle_ms`, 30 s unless set). A plugin has a few
    /// streams open at most: drop (or [`HttpStream::close`]) one it no longer reads. The host
    /// closes them all when the plugin is torn down, and writes one audit record for each when
    /// it ends, with the bytes it carried.
    ///
    /// # Errors
    ///
    /// As [`Http::send`]; [`ContextError::Refused`] too when the plugin has as many streams open
    /// as the host allows.
    pub fn stream(&self, request: &HttpRequest) -> Result<HttpStream, ContextError> {
        let payload = request.payload()?;
        let answer = self.ctx.request(
            Request::HttpStreamOpen.service(),
            Request::HttpStreamOpen.operation(),
            &payload,
        )?;
        let head: HttpStreamHead =
            serde_json::from_slice(&answer).map_err(|e| ContextError::Decode(e.to_string()))?;
        Ok(HttpStream {
            ctx: *self.ctx,
            id: head.stream,
            status: head.status,
            headers: head.headers,
            ended: false,
        })
    }
}

/// A response whose body is read as it arrives, from [`Http::stream`]. As an iterator it yields
/// the chunks, then ends (after an error, too). Dropped before its end, it is closed.
#[derive(Debug)]
pub struct HttpStream {
    ctx: Context,
    id: u64,
    /// The status code (after the redirects the host followed).
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    ended: bool,
}

impl HttpStream {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next chunk of the body, as it arrived (waits for it); `None` at the end.
    ///
    /// # Errors
    ///
    /// [`ContextError::Unreachable`] when the server sent nothing for the idle time, or the
    /// connection broke; [`ContextError::CapabilityViolation`] once the grant for the host is
    /// revoked; [`ContextError::Revoked`] when the plugin is torn down. Each ends the stream.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ContextError> {
        if self.ended {
            return Ok(None);
        }
        let payload = serde_json::to_vec(&HttpStreamId { stream: self.id })
            .map_err(|e| ContextError::BadRequest(e.to_string()))?;
        let answer = self.ctx.request(
            Request::HttpStreamNext.service(),
            Request::HttpStreamNext.operation(),
            &payload,
        );
        match answer {
            Ok(chunk) if !chunk.is_empty() => Ok(Some(chunk)),
            Ok(_) => {
                self.ended = true;
                Ok(None)
            }
            Err(e) => {
                self.ended = true;
                Err(e)
            }
        }
    }

    /// Closes the stream before its end (dropping it does the same).
    pub fn close(mut self) {
        self.close_now();
    }

    fn close_now(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if let Ok(payload) = serde_json::to_vec(&HttpStreamId { stream: self.id }) {
            // Nothing to do about a failure: the host closes what is left at teardown.
            let _ = self.ctx.request(
                Request::HttpStreamClose.service(),
                Request::HttpStreamClose.operation(),
                &payload,
            );
        }
    }
}

impl Iterator for HttpStream {
    type Item = Result<Vec<u8>, ContextError>;

    fn next(&mut self) -> Option<Self::Item> {
        // An error ends the stream: the call after it answers `None`.
        self.next_chunk().transpose()
    }
}

impl Drop for HttpStream {
    fn drop(&mut self) {
        self.close_now();
    }
}
