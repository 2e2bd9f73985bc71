//! Reading and writing a worker's socket within a deadline. The socket is never waited on in
//! a blocking call: the kernel gives a blocking read or write its whole timeout again each time
//! a few bytes move, so a peer that trickles or drains slowly would stretch it without end.
//! Polling with what is left of the deadline cannot be stretched.

use std::io::{self, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// Waits until `socket` is ready for `ready` (reading or writing), or `deadline` passes (an
/// error).
fn wait_ready(
    socket: &UnixStream,
    ready: rustix::event::PollFlags,
    deadline: Option<Instant>,
) -> io::Result<()> {
    loop {
        let left = match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
            Some(left) if left.is_zero() => return Err(io::ErrorKind::TimedOut.into()),
            Some(left) => Some(
                rustix::event::Timespec::try_from(left)
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
            ),
            None => None,
        };
        let mut fds = [rustix::event::PollFd::new(socket, ready)];
        match rustix::event::poll(&mut fds, left.as_ref()) {
            Ok(0) => {}
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Fills `buf` from `reader`, waiting for each byte no longer than `deadline`.
pub(super) fn read_exact_by(
    reader: &mut BufReader<UnixStream>,
    mut buf: &mut [u8],
    deadline: Option<Instant>,
) -> io::Result<()> {
    while !buf.is_empty() {
        // Bytes already buffered are read without waiting; otherwise the read that follows a
        // readable poll returns what arrived (or the end) at once.
        if reader.buffer().is_empty() {
            wait_ready(reader.get_ref(), rustix::event::PollFlags::IN, deadline)?;
        }
        match reader.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf` to `writer`, waiting for room no longer than `deadline`: each write
/// takes what fits now and never blocks.
pub(super) fn write_all_by(
    writer: &UnixStream,
    mut buf: &[u8],
    deadline: Option<Instant>,
) -> io::Result<()> {
    use rustix::net::SendFlags;
    while !buf.is_empty() {
        match rustix::net::send(writer, buf, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::AGAIN) => {
                wait_ready(writer, rustix::event::PollFlags::OUT, deadline)?;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
