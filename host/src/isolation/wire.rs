//! The channel between a host and a worker process: binary frames, one message each way at a
//! time. The host sends commands (load, validate, create, call, destroy) and answers the
//! plugin's requests; the worker sends the plugin's requests (log, config, a service request)
//! and, last, the command's answer. A message travels through the memory both processes share
//! ([`super::turns`]) when it fits, else over the Unix socket the worker was started with, which
//! also carries the wake-ups of a side that sleeps. Nothing in a frame is trusted: a frame
//! larger than its kind allows ([`limit`]) or cut short is a broken channel, and a frame's
//! buffer grows only as its bytes arrive, so an announced length costs nothing by itself.
//! **No byte waits past the deadline**: every read and write on the socket is given what is
//! left of it, so a peer that trickles a frame or drains one slowly is cut off at the deadline,
//! however many bytes it moves.

use std::io::{self, BufReader};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::bounded::{read_exact_by, write_all_by};
use super::frame::{broken, limit, Fields, Frame};
use crate::sync::shm::{self, Region};
use crate::sync::turns::{Bell, Side};

/// How far ahead of the bytes that arrived a frame's buffer grows.
const GROWTH: usize = 1 << 20;

/// A buffer larger than this is given back after its message, not kept for the channel's life.
const KEPT: usize = 1 << 20;

/// The byte that wakes a side sleeping on the socket.
const WAKE: u8 = 0xB7;

/// How long a side waiting for its turn spins before it sleeps: about what a sleep and a
/// wake-up cost, so a quick answer is met at once. No spinning on one processor, where the
/// spinner would only keep the other side from running.
fn spin() -> Duration {
    static SPIN: OnceLock<Duration> = OnceLock::new();
    *SPIN.get_or_init(|| match std::thread::available_parallelism() {
        Ok(n) if n.get() > 1 => Duration::from_micros(20),
        _ => Duration::ZERO,
    })
}

/// From the host to the worker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToWorker<'a> {
    /// The checked library's bytes: the worker runs stage 4 on them (`Done`: empty, or the
    /// refusal's reason code and detail).
    /// With `sealed_only` (the bytes were pinned or signed), never from a shadow file.
    Load {
        label: &'a str,
        bytes: &'a [u8],
        sealed_only: bool,
    },
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

/// One end of the channel.
pub(crate) struct Channel {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    /// The shared memory and this end's side, once opened (else the socket carries all).
    shared: Option<(Region, Side)>,
    /// When the message being waited for is overdue.
    deadline: Option<Instant>,
    out: Vec<u8>,
    frame: Vec<u8>,
}

/// The socket as the bell of a side that sleeps.
struct SocketBell<'c> {
    writer: &'c UnixStream,
    reader: &'c mut BufReader<UnixStream>,
    /// When the message being waited for (or sent) is overdue.
    deadline: Option<Instant>,
}

impl Bell for SocketBell<'_> {
    fn ring(&mut self) -> io::Result<()> {
        // A peer that asks to be woken and never reads fills the socket: the write is timed
        // like a read, so the host is never held by it.
        write_all_by(self.writer, &[WAKE], self.deadline)
    }

    fn sleep(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        let mut byte = [0u8; 1];
        read_exact_by(self.reader, &mut byte, deadline)?;
        if byte[0] == WAKE {
            Ok(())
        } else {
            Err(broken(
                "the channel's socket carried something else than a wake-up",
            ))
        }
    }
}

impl Channel {
    /// The channel over `stream`, before it is opened.
    pub(crate) fn new(stream: UnixStream) -> io::Result<Self> {
        Ok(Self {
            reader: BufReader::with_capacity(64 << 10, stream.try_clone()?),
            writer: stream,
            shared: None,
            deadline: None,
            out: Vec::new(),
            frame: Vec::new(),
        })
    }

    /// Opens the channel (host side, first): shares memory with the worker if this system
    /// can, else tells it the socket carries everything.
    pub(crate) fn open(&mut self) -> io::Result<()> {
        match Region::create() {
            Ok((region, memfd)) => {
                shm::offer(&self.writer, Some(&memfd))?;
                self.shared = Some((region, Side::Host));
            }
            Err(_) => shm::offer(&self.writer, None)?,
        }
        Ok(())
    }

    /// Accepts what the host opened (worker side, first).
    pub(crate) fn accept(&mut self) -> io::Result<()> {
        self.shared = shm::accept(&self.writer)?.map(|region| (region, Side::Worker));
        Ok(())
    }

    /// Whether messages travel through shared memory.
    #[cfg(test)]
    fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// When a message waited for from now on is overdue (`None`: never).
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Sends the frame built in `out`: through the shared buffer if it fits, else the socket.
    fn transmit(&mut self) -> io::Result<()> {
        let Some((region, side)) = &self.shared else {
            return write_all_by(&self.writer, &self.out, self.deadline);
        };
        let turns = region.turns();
        // The shared buffer holds the frame without its length prefix.
        let fits = turns.put(&self.out[4..]);
        let mut bell = SocketBell {
            writer: &self.writer,
            reader: &mut self.reader,
            deadline: self.deadline,
        };
        turns.hand_over(*side, &mut bell)?;
        if fits {
            Ok(())
        } else {
            write_all_by(&self.writer, &self.out, self.deadline)
        }
    }

    /// Sends a command or a reply (host side).
    pub(crate) fn send(&mut self, message: &ToWorker<'_>) -> io::Result<()> {
        let frame = match *message {
            ToWorker::Load {
                label,
                bytes,
                sealed_only,
            } => Frame::new(&mut self.out, 1)
                .u32(u32::from(sealed_only))
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
        frame.finish()?;
        let sent = self.transmit();
        if self.out.capacity() > KEPT {
            self.out = Vec::new();
        }
        sent
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
        frame.finish()?;
        let sent = self.transmit();
        if self.out.capacity() > KEPT {
            self.out = Vec::new();
        }
        sent
    }

    /// Reads a frame from the socket into the channel's buffer, which grows as the bytes arrive
    /// (never more than [`GROWTH`] ahead of them), within the limit of its kind.
    fn read_socket_frame(&mut self, from_worker: bool) -> io::Result<()> {
        let mut head = [0u8; 5];
        read_exact_by(&mut self.reader, &mut head, self.deadline)?;
        let [a, b, c, d, tag] = head;
        let len = u32::from_le_bytes([a, b, c, d]) as usize;
        if len == 0 || len > limit(tag, from_worker) {
            return Err(broken("a frame's length is out of bounds for its kind"));
        }
        if self.frame.capacity() > KEPT {
            self.frame = Vec::new();
        }
        self.frame.clear();
        self.frame.push(tag);
        while self.frame.len() < len {
            let start = self.frame.len();
            self.frame.resize(len.min(start + GROWTH), 0);
            read_exact_by(&mut self.reader, &mut self.frame[start..], self.deadline)?;
        }
        Ok(())
    }

    /// The frame's bytes from `at` on, as an owned buffer: a large one is handed over whole
    /// (its head cut off in place) rather than copied.
    fn tail(&mut self, at: usize) -> Vec<u8> {
        if self.frame.capacity() > KEPT {
            let mut frame = std::mem::take(&mut self.frame);
            frame.drain(..at.min(frame.len()));
            frame
        } else {
            self.frame.get(at..).unwrap_or_default().to_vec()
        }
    }

    /// Waits for the next frame and reads it into the channel's buffer; its tag and fields.
    fn read_frame(&mut self, from_worker: bool) -> io::Result<(u8, Fields<'_>)> {
        let in_memory = match &self.shared {
            Some((region, side)) => {
                let turns = region.turns();
                let mut bell = SocketBell {
                    writer: &self.writer,
                    reader: &mut self.reader,
                    deadline: self.deadline,
                };
                turns.wait(*side, spin(), &mut bell, self.deadline)?;
                turns.take(&mut self.frame)?
            }
            None => false,
        };
        if !in_memory {
            self.read_socket_frame(from_worker)?;
        }
        let (&tag, fields) = self
            .frame
            .split_first()
            .ok_or_else(|| broken("a frame is empty"))?;
        if self.frame.len() > limit(tag, from_worker) {
            return Err(broken("a frame's length is out of bounds for its kind"));
        }
        Ok((tag, Fields(fields)))
    }

    /// Reads what the worker says (host side).
    pub(crate) fn receive(&mut self) -> io::Result<FromWorker> {
        let (tag, mut f) = self.read_frame(true)?;
        if tag == 1 {
            // The answer, which may be large: its body is the frame's tail.
            let code = f.u32()?;
            let len = f.bytes()?.len();
            let mut body = self.tail(9);
            body.truncate(len);
            return Ok(FromWorker::Done { code, body });
        }
        Ok(match tag {
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
        let (tag, mut fields) = self.read_frame(false)?;
        let message = match tag {
            1 => ToWorker::Load {
                sealed_only: fields.u32()? != 0,
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
    use super::super::frame::{MAX_FRAME, MAX_LOG, MAX_REQUEST};
    use super::*;
    use std::io::{Read, Write};

    /// A host end and a worker end, opened: sharing memory, or over the socket alone.
    fn pair(shared: bool) -> (Channel, Channel) {
        let (a, b) = UnixStream::pair().expect("pair");
        let (mut host, mut worker) = (Channel::new(a).expect("a"), Channel::new(b).expect("b"));
        if shared {
            host.open().expect("opened");
        } else {
            shm::offer(&host.writer, None).expect("offered");
        }
        worker.accept().expect("accepted");
        assert_eq!(worker.is_shared(), shared && cfg!(target_os = "linux"));
        (host, worker)
    }

    fn commands(big: &[u8]) -> Vec<ToWorker<'_>> {
        vec![
            ToWorker::Load {
                label: "lib.so",
                bytes: big,
                sealed_only: true,
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
            ToWorker::Reply {
                code: 2,
                capability: "kv",
                body: b"denied",
            },
            ToWorker::Destroy,
        ]
    }

    fn answers() -> Vec<FromWorker> {
        vec![
            FromWorker::Done {
                code: 0,
                body: vec![0x5A; shm::CAPACITY + 1],
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
            FromWorker::Done {
                code: 0,
                body: b"ok".to_vec(),
            },
            FromWorker::Done {
                code: 7,
                body: Vec::new(),
            },
        ]
    }

    /// Every message crosses intact, in turns, with the worker in its own thread (so that
    /// each side also sleeps and is woken), one of each direction's larger than the buffer.
    fn round_trips(shared: bool) {
        let (mut host, mut worker) = pair(shared);
        let big = vec![0xC3; shm::CAPACITY + 1];
        let serving = std::thread::spawn(move || {
            let big = vec![0xC3; shm::CAPACITY + 1];
            for (command, answer) in commands(&big).iter().zip(answers()) {
                let same = worker.command(|c| c == *command).expect("read");
                assert!(same, "{command:?}");
                // Late enough that the host has stopped spinning.
                std::thread::sleep(Duration::from_millis(2));
                worker.answer(&answer).expect("sent");
            }
        });
        for (command, answer) in commands(&big).iter().zip(answers()) {
            host.set_deadline(Some(Instant::now() + Duration::from_secs(10)));
            host.send(command).expect("sent");
            assert_eq!(host.receive().expect("read"), answer);
            std::thread::sleep(Duration::from_millis(1));
        }
        serving.join().expect("worker side");
    }

    #[test]
    fn every_message_crosses_both_ways_intact_through_shared_memory() {
        round_trips(true);
    }

    #[test]
    fn every_message_crosses_both_ways_intact_over_the_socket_alone() {
        round_trips(false);
    }

    #[test]
    fn a_worker_that_never_answers_times_out_and_one_that_dies_breaks_the_channel() {
        let (mut host, worker) = pair(true);
        host.set_deadline(Some(Instant::now() + Duration::from_millis(30)));
        host.send(&ToWorker::Destroy).expect("sent");
        let err = host.receive().expect_err("no answer");
        assert!(matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        drop(worker);
        host.set_deadline(None);
        let err = host.receive().expect_err("gone");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_peer_that_asks_to_be_woken_and_never_reads_cannot_hold_the_host() {
        let (mut host, worker) = pair(true);
        if worker.shared.is_none() {
            return; // No shared memory on this system: nothing to wake.
        }
        // On its own thread, so that a host held forever fails the test instead of hanging it.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let Some((region, _)) = &worker.shared else {
                return;
            };
            let turns = region.turns();
            let state = turns.state_word();
            host.set_deadline(Some(Instant::now() + Duration::from_millis(200)));
            // Each time, the buffer is handed back to the host with the worker "asleep", so
            // the host rings; the worker never reads the rings, and the socket fills.
            let mut sent = Ok(());
            for _ in 0..10_000_000 {
                state.store(
                    crate::sync::turns::WAITING,
                    std::sync::atomic::Ordering::SeqCst,
                );
                sent = host.send(&ToWorker::Destroy);
                if sent.is_err() {
                    break;
                }
            }
            let _ = done.send(sent.map_err(|e| e.kind()));
        });
        let sent = result
            .recv_timeout(Duration::from_secs(10))
            .expect("the host was held by a peer that never reads");
        assert!(
            matches!(
                sent,
                Err(io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
            ),
            "{sent:?}"
        );
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

    /// The worker's end hands the host its turn with the frame on the socket (as for a frame
    /// larger than the shared buffer), without writing the frame: the test writes it by hand.
    fn frame_follows_on_the_socket(worker: &mut Channel) {
        if let Some((region, side)) = &worker.shared {
            let turns = region.turns();
            assert!(!turns.put(&vec![0; shm::CAPACITY + 1]));
            let mut bell = SocketBell {
                writer: &worker.writer,
                reader: &mut worker.reader,
                deadline: None,
            };
            turns.hand_over(*side, &mut bell).expect("handed over");
        }
    }

    /// The host gave up waiting at its 200 ms deadline: a timeout, within a bound generous
    /// enough for a noisy machine and far below what the peer would have held it.
    fn gave_up_in_time(err: &io::Error, started: Instant) {
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{err}"
        );
        let held = started.elapsed();
        assert!(held < Duration::from_secs(2), "held {held:?}");
    }

    /// A peer that trickles a frame — its header, then a byte every 10 ms — cannot hold the host
    /// past its deadline, however long the frame: each read gets only what is left.
    fn trickled(shared: bool) {
        let (mut host, mut worker) = pair(shared);
        let trickling = std::thread::spawn(move || {
            // The host's turn first: the worker answers a command.
            worker.command(|_| ()).expect("a command");
            frame_follows_on_the_socket(&mut worker);
            let mut raw = &worker.writer;
            let _ = raw.write_all(&[0xE8, 0x03, 0, 0, 1]);
            for _ in 0..500 {
                if raw.write_all(&[0]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        host.set_deadline(Some(Instant::now() + Duration::from_secs(5)));
        host.send(&ToWorker::Destroy).expect("sent");
        let started = Instant::now();
        host.set_deadline(Some(started + Duration::from_millis(200)));
        let err = host
            .receive()
            .expect_err("the frame never completes in time");
        // The frame would take 5 s to arrive.
        gave_up_in_time(&err, started);
        drop(host);
        trickling.join().expect("trickler");
    }

    #[test]
    fn a_trickled_frame_is_cut_off_at_the_deadline_over_the_socket() {
        trickled(false);
    }

    #[test]
    fn a_trickled_frame_is_cut_off_at_the_deadline_after_a_shared_memory_hand_over() {
        trickled(true);
    }

    /// A peer that drains a large frame slowly cannot hold the host's write past its deadline.
    fn drained_slowly(shared: bool) {
        let (mut host, worker) = pair(shared);
        let draining = std::thread::spawn(move || {
            let mut raw = &worker.writer;
            let mut chunk = [0u8; 4096];
            for _ in 0..1000 {
                match raw.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let big = vec![0x11; 8 << 20];
        let started = Instant::now();
        host.set_deadline(Some(started + Duration::from_millis(200)));
        let err = host
            .send(&ToWorker::Reply {
                code: 0,
                capability: "",
                body: &big,
            })
            .expect_err("the frame is not drained in time");
        // Drained at 400 KiB/s, 8 MiB would take 20 s.
        gave_up_in_time(&err, started);
        drop(host);
        draining.join().expect("drainer");
    }

    #[test]
    fn a_slowly_drained_frame_is_cut_off_at_the_deadline_over_the_socket() {
        drained_slowly(false);
    }

    #[test]
    fn a_slowly_drained_frame_is_cut_off_at_the_deadline_with_shared_memory() {
        drained_slowly(true);
    }

    #[test]
    fn an_announced_frame_costs_nothing_until_its_bytes_arrive() {
        let (a, b) = UnixStream::pair().expect("pair");
        let mut host = Channel::new(a).expect("a");
        let mut raw = b;
        // An answer of 256 MiB announced, 16 bytes sent.
        raw.write_all(&(MAX_FRAME as u32).to_le_bytes())
            .expect("header");
        raw.write_all(&[1; 17]).expect("a few bytes");
        host.set_deadline(Some(Instant::now() + Duration::from_millis(50)));
        let err = host.receive().expect_err("incomplete");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{err}"
        );
        assert!(
            host.frame.capacity() <= GROWTH + 64,
            "the host holds {} bytes for a frame of 17",
            host.frame.capacity()
        );
    }

    #[test]
    fn each_kind_of_frame_has_its_own_limit() {
        // A log line, a config read, a request: none may be as large as an answer.
        for (tag, len) in [(2u8, MAX_LOG + 1), (3, 2), (4, MAX_REQUEST + 1), (9, 1)] {
            let (a, b) = UnixStream::pair().expect("pair");
            let mut host = Channel::new(a).expect("a");
            let mut raw = b;
            raw.write_all(&(len as u32).to_le_bytes()).expect("header");
            raw.write_all(&[tag]).expect("tag");
            host.set_deadline(Some(Instant::now() + Duration::from_secs(5)));
            let err = host.receive().expect_err("over its limit");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "tag {tag}: {err}");
        }
    }

    #[test]
    fn a_large_answer_is_handed_over_and_its_buffer_not_kept() {
        let (mut host, mut worker) = pair(false);
        let body = vec![0x42; 3 << 20];
        let expected = body.clone();
        let answering = std::thread::spawn(move || {
            worker
                .answer(&FromWorker::Done { code: 0, body })
                .expect("sent");
        });
        host.set_deadline(Some(Instant::now() + Duration::from_secs(10)));
        let FromWorker::Done { code, body } = host.receive().expect("read") else {
            panic!("not an answer");
        };
        assert_eq!((code, body == expected), (0, true));
        assert!(host.frame.capacity() <= KEPT, "{}", host.frame.capacity());
        answering.join().expect("worker");
    }
}
