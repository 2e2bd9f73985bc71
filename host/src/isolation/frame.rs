//! How a message is laid out on a worker's channel: a length (little-endian `u32`, counting
//! the tag), a tag, then its fields — `u32`s and length-prefixed byte strings — and how large
//! each kind of frame may be. Both sides build and read frames here; nothing read is trusted.

use std::io;

/// The largest frame either side accepts (a library, or a call's answer).
pub(crate) const MAX_FRAME: usize = 256 << 20;

/// The largest request a plugin sends the host (a kv value, an outbound body, an event).
pub(super) const MAX_REQUEST: usize = 32 << 20;

/// The largest log line a plugin sends the host.
pub(super) const MAX_LOG: usize = 1 << 20;

/// The largest frame of each kind the host accepts from a worker (`from_worker`), or a worker
/// from its host: only a library and an answer may be large.
pub(super) fn limit(tag: u8, from_worker: bool) -> usize {
    match (from_worker, tag) {
        // Done: the command's answer.
        (true, 1) => MAX_FRAME,
        (true, 2) => MAX_LOG,
        // Config: the tag alone.
        (true, 3) => 1,
        (true, 4) => MAX_REQUEST,
        // Load, Validate, Call, Reply: the library, a config, a payload, an answer.
        (false, 1 | 2 | 4 | 6) => MAX_FRAME,
        // Create, Destroy.
        (false, 3 | 5) => 64,
        _ => 0,
    }
}

/// Builds one frame in a reused buffer.
pub(super) struct Frame<'b>(&'b mut Vec<u8>);

impl<'b> Frame<'b> {
    pub(super) fn new(buf: &'b mut Vec<u8>, tag: u8) -> Self {
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        buf.push(tag);
        Self(buf)
    }
    pub(super) fn u32(self, n: u32) -> Self {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }
    pub(super) fn bytes(self, b: &[u8]) -> Self {
        // Frames are bounded by MAX_FRAME, far below u32::MAX.
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }
    pub(super) fn finish(self) -> io::Result<()> {
        let len = self.0.len() - 4;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a frame of {len} bytes is over the channel's limit of {MAX_FRAME}"),
            ));
        }
        self.0[..4].copy_from_slice(&(len as u32).to_le_bytes());
        Ok(())
    }
}

/// Reads the fields of a frame.
pub(super) struct Fields<'f>(pub(super) &'f [u8]);

impl<'f> Fields<'f> {
    pub(super) fn u32(&mut self) -> io::Result<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>().ok_or_else(cut)?;
        self.0 = rest;
        Ok(u32::from_le_bytes(*head))
    }
    pub(super) fn bytes(&mut self) -> io::Result<&'f [u8]> {
        let len = self.u32()? as usize;
        if len > self.0.len() {
            return Err(cut());
        }
        let (b, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(b)
    }
    pub(super) fn text(&mut self) -> io::Result<&'f str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| broken("a name is not UTF-8"))
    }
}

fn cut() -> io::Error {
    broken("a frame is cut short")
}

pub(super) fn broken(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
