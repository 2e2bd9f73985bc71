//! The channel between a host and a worker process: length-prefixed binary frames over a Unix
//! socket, one message each way at a time. The host sends commands (load, validate, create,
//! call, destroy) and answers the plugin's requests; the worker sends the plugin's requests
//! (log, config, a service request) and, last, the command's answer. Nothing in a frame is
//! trusted: a frame larger than [`MAX_FRAME`] or cut short is a broken channel.

use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

/// The largest frame either side accepts (a library, or a call's payload).
pub(crate) const MAX_FRAME: usize = 256 << 20;

/// From the host to the worker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToWorker<'a> {
    /// The checked library's bytes: the worker runs stage 4 on them (`Done`: empty, or the
    /// refusal's reason code and detail).
    Load { label: &'a str, bytes: &'a [u8] },
    /// `validate_config` (`Done`: the plugin's report).
    Validate { config: &'a [u8] },
    /// Creates the instance with this context token (`Done`: empty, or the error).
    Create { slot: u32, generation: u32 },
    /// One invocation of the instance (`Done`: the answer, or the error's message).
    Call {
        kind: u32,
        index: u32,
        name: &'a str,
        payload: &'a [u8],
    },
    /// Tears the instance down; the worker exits after answering.
    Destroy,
    /// The answer to the plugin's request: `code` 0 is success (`body` the answer), otherwise a
    /// `HostErrorCode` with the capability concerned and the message in `body`.
    Reply {
        code: u32,
        capability: &'a str,
        body: &'a [u8],
    },
}

/// From the worker to the host.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FromWorker {
    /// The answer to the last command: an `ErrorCode` and the answer or message.
    Done { code: u32, body: Vec<u8> },
    /// The plugin logs.
    Log { level: u8, message: Vec<u8> },
    /// The plugin reads its config.
    Config,
    /// The plugin asks a service.
    Request {
        service: Vec<u8>,
        operation: Vec<u8>,
        payload: Vec<u8>,
    },
}

/// Builds one frame in a reused buffer.
struct Frame<'b>(&'b mut Vec<u8>);

impl<'b> Frame<'b> {
    fn new(buf: &'b mut Vec<u8>, tag: u8) -> Self {
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        buf.push(tag);
        Self(buf)
    }
    fn u32(self, n: u32) -> Self {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }
    fn bytes(self, b: &[u8]) -> Self {
        // Frames are bounded by MAX_FRAME, far below u32::MAX.
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }
    fn finish(self) -> io::Result<&'b [u8]> {
        let len = self.0.len() - 4;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a frame of {len} bytes is over the channel's limit of {MAX_FRAME}"),
            ));
        }
        self.0[..4].copy_from_slice(&(len as u32).to_le_bytes());
        Ok(self.0)
    }
}

/// Reads the fields of a frame.
struct Fields<'f>(&'f [u8]);

impl<'f> Fields<'f> {
    fn u32(&mut self) -> io::Result<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>().ok_or_else(cut)?;
        self.0 = rest;
        Ok(u32::from_le_bytes(*head))
    }
    fn bytes(&mut self) -> io::Result<&'f [u8]> {
        let len = self.u32()? as usize;
        if len > self.0.len() {
            return Err(cut());
        }
        let (b, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(b)
    }
    fn text(&mut self) -> io::Result<&'f str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| broken("a name is not UTF-8"))
    }
}

fn cut() -> io::Error {
    broken("a frame is cut short")
}

fn broken(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// One end of the channel.
pub(crate) struct Channel {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    out: Vec<u8>,
    frame: Vec<u8>,
}

impl Channel {
    /// The channel over `stream`.
    pub(crate) fn new(stream: UnixStream) -> io::Result<Self> {
        Ok(Self {
            reader: BufReader::with_capacity(64 << 10, stream.try_clone()?),
            writer: stream,
            out: Vec::new(),
            frame: Vec::new(),
        })
    }

    /// The socket, to set timeouts on.
    pub(crate) fn socket(&self) -> &UnixStream {
        &self.writer
    }

    /// Sends a command or a reply (host side).
    pub(crate) fn send(&mut self, message: &ToWorker<'_>) -> io::Result<()> {
        let frame = match *message {
            ToWorker::Load { label, bytes } => Frame::new(&mut self.out, 1)
                .bytes(label.as_bytes())
                .bytes(bytes),
            ToWorker::Validate { config } => Frame::new(&mut self.out, 2).bytes(config),
            ToWorker::Create { slot, generation } => {
                Frame::new(&mut self.out, 3).u32(slot).u32(generation)
            }
            ToWorker::Call {
                kind,
                index,
                name,
                payload,
            } => Frame::new(&mut self.out, 4)
                .u32(kind)
                .u32(index)
                .bytes(name.as_bytes())
                .bytes(payload),
            ToWorker::Destroy => Frame::new(&mut self.out, 5),
            ToWorker::Reply {
                code,
                capability,
                body,
            } => Frame::new(&mut self.out, 6)
                .u32(code)
                .bytes(capability.as_bytes())
                .bytes(body),
        };
        self.writer.write_all(frame.finish()?)
    }

    /// Sends what the worker says (worker side).
    pub(crate) fn answer(&mut self, message: &FromWorker) -> io::Result<()> {
        let frame = match message {
            FromWorker::Done { code, body } => Frame::new(&mut self.out, 1).u32(*code).bytes(body),
            FromWorker::Log { level, message } => Frame::new(&mut self.out, 2)
                .u32(u32::from(*level))
                .bytes(message),
            FromWorker::Config => Frame::new(&mut self.out, 3),
            FromWorker::Request {
                service,
                operation,
                payload,
            } => Frame::new(&mut self.out, 4)
                .bytes(service)
                .bytes(operation)
                .bytes(payload),
        };
        self.writer.write_all(frame.finish()?)
    }

    /// Reads the next frame into the channel's buffer; its tag and fields.
    fn read_frame(&mut self) -> io::Result<(u8, Fields<'_>)> {
        let mut head = [0u8; 5];
        self.reader.read_exact(&mut head)?;
        let [a, b, c, d, tag] = head;
        let len = u32::from_le_bytes([a, b, c, d]) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(broken("a frame's length is out of bounds"));
        }
        self.frame.clear();
        self.frame.resize(len - 1, 0);
        self.reader.read_exact(&mut self.frame)?;
        Ok((tag, Fields(&self.frame)))
    }

    /// Reads what the worker says (host side).
    pub(crate) fn receive(&mut self) -> io::Result<FromWorker> {
        let (tag, mut f) = self.read_frame()?;
        Ok(match tag {
            1 => FromWorker::Done {
                code: f.u32()?,
                body: f.bytes()?.to_vec(),
            },
            2 => FromWorker::Log {
                level: u8::try_from(f.u32()?).unwrap_or(u8::MAX),
                message: f.bytes()?.to_vec(),
            },
            3 => FromWorker::Config,
            4 => FromWorker::Request {
                service: f.bytes()?.to_vec(),
                operation: f.bytes()?.to_vec(),
                payload: f.bytes()?.to_vec(),
            },
            _ => return Err(broken("an unknown message from the worker")),
        })
    }

    /// Reads a command or a reply and hands it to `f` (worker side; the frame is borrowed).
    pub(crate) fn command<T>(&mut self, f: impl FnOnce(ToWorker<'_>) -> T) -> io::Result<T> {
        let (tag, mut fields) = self.read_frame()?;
        let message = match tag {
            1 => ToWorker::Load {
                label: fields.text()?,
                bytes: fields.bytes()?,
            },
            2 => ToWorker::Validate {
                config: fields.bytes()?,
            },
            3 => ToWorker::Create {
                slot: fields.u32()?,
                generation: fields.u32()?,
            },
            4 => ToWorker::Call {
                kind: fields.u32()?,
                index: fields.u32()?,
                name: fields.text()?,
                payload: fields.bytes()?,
            },
            5 => ToWorker::Destroy,
            6 => ToWorker::Reply {
                code: fields.u32()?,
                capability: fields.text()?,
                body: fields.bytes()?,
            },
            _ => return Err(broken("an unknown command from the host")),
        };
        Ok(f(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_crosses_both_ways_intact() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (mut host, mut worker) = (Channel::new(a).expect("a"), Channel::new(b).expect("b"));
        let commands = [
            ToWorker::Load {
                label: "lib.so",
                bytes: b"\x7fELF",
            },
            ToWorker::Validate { config: b"{}" },
            ToWorker::Create {
                slot: 3,
                generation: 9,
            },
            ToWorker::Call {
                kind: 1,
                index: 2,
                name: "greet",
                payload: b"null",
            },
            ToWorker::Destroy,
            ToWorker::Reply {
                code: 2,
                capability: "kv",
                body: b"denied",
            },
        ];
        for command in &commands {
            host.send(command).expect("sent");
            let same = worker.command(|c| c == *command).expect("read");
            assert!(same, "{command:?}");
        }
        let answers = [
            FromWorker::Done {
                code: 0,
                body: b"ok".to_vec(),
            },
            FromWorker::Log {
                level: 3,
                message: b"hi".to_vec(),
            },
            FromWorker::Config,
            FromWorker::Request {
                service: b"kv".to_vec(),
                operation: b"get".to_vec(),
                payload: b"{}".to_vec(),
            },
        ];
        for answer in answers {
            worker.answer(&answer).expect("sent");
            assert_eq!(host.receive().expect("read"), answer);
        }
    }

    #[test]
    fn a_frame_cut_short_or_too_long_is_a_broken_channel() {
        let (a, b) = UnixStream::pair().expect("pair");
        let mut host = Channel::new(a).expect("a");
        let mut raw = b;
        raw.write_all(&[9, 0, 0, 0, 1, 0, 0]).expect("written");
        drop(raw);
        assert!(host.receive().is_err());

        let (a, b) = UnixStream::pair().expect("pair");
        let mut host = Channel::new(a).expect("a");
        let mut raw = b;
        raw.write_all(&u32::MAX.to_le_bytes()).expect("written");
        raw.write_all(&[1]).expect("written");
        let err = host.receive().expect_err("too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
