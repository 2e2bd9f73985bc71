//! The memory a host shares with one of its workers: a sealed memfd of fixed size that both map,
//! holding the [`Turns`] of their channel: mapping the memfd and viewing it as atomics is the
//! concurrent core's work, beside the hazard pointers.
//!
//! The host creates the memfd, seals its size (a worker cannot shrink it under the host's
//! mapping, which would fault the host), and sends it over the channel's socket with the first
//! byte; the worker maps it and closes its descriptor before any plugin code runs. Where there
//! is no memfd (another OS, or a model under loom) the channel runs on its socket alone.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use super::turns::Turns;

/// The largest message that travels through the shared buffer (larger ones take the socket).
pub(crate) const CAPACITY: usize = 1 << 20;

/// The byte sent with the memfd.
const HELLO: u8 = 0xA1;
/// The byte sent alone, when the host has no memory to share (the socket carries everything).
const HELLO_SOCKET: u8 = 0xA2;

/// Sends `region`'s memfd to the worker (or nothing to share).
pub(crate) fn offer(socket: &UnixStream, memfd: Option<&OwnedFd>) -> io::Result<()> {
    imp::offer(socket, memfd)
}

/// Receives what the host offered: its memfd, mapped, or `None` (a socket-only channel).
pub(crate) fn accept(socket: &UnixStream) -> io::Result<Option<Region>> {
    imp::accept(socket)
}

pub(crate) use imp::Region;

#[cfg(all(target_os = "linux", not(loom)))]
mod imp {
    use std::io;
    use std::io::{IoSlice, IoSliceMut};
    use std::mem::MaybeUninit;
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    use std::ptr::NonNull;
    use std::sync::atomic::{AtomicU32, AtomicU64};

    use rustix::fs::{MemfdFlags, SealFlags};
    use rustix::mm::{MapFlags, ProtFlags};
    use rustix::net::{
        RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
        SendAncillaryMessage, SendFlags,
    };

    use super::{Turns, CAPACITY, HELLO, HELLO_SOCKET};

    /// The state and length words, then padding to the next cache line.
    const HEADER: usize = 64;
    const SIZE: usize = HEADER + CAPACITY;

    /// The shared memory, mapped into this process.
    pub(crate) struct Region {
        base: NonNull<u8>,
    }

    // SAFETY: the mapping is only ever accessed through atomics (see `turns`), which may be
    // shared between threads; the pointer itself is never written after creation.
    unsafe impl Send for Region {}
    // SAFETY: as above.
    unsafe impl Sync for Region {}

    impl Region {
        /// A new region for a worker (host side): the mapping and the sealed memfd to send.
        pub(crate) fn create() -> io::Result<(Self, OwnedFd)> {
            let memfd = rustix::fs::memfd_create(
                "airlock-channel",
                MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
            )?;
            rustix::fs::ftruncate(&memfd, SIZE as u64)?;
            rustix::fs::fcntl_add_seals(
                &memfd,
                SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
            )?;
            Ok((Self::map(&memfd)?, memfd))
        }

        /// Maps `memfd`, which must be at least `SIZE` long and sealed against shrinking.
        fn map(memfd: &OwnedFd) -> io::Result<Self> {
            let seals = rustix::fs::fcntl_get_seals(memfd)?;
            let size = rustix::fs::fstat(memfd)?.st_size;
            if !seals.contains(SealFlags::SHRINK) || u64::try_from(size).ok() < Some(SIZE as u64) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the shared channel memory is too small or not sealed",
                ));
            }
            // SAFETY: a new shared mapping chosen by the kernel (no address hint), of a file
            // at least SIZE long whose size is sealed, so no access within SIZE can fault.
            // Nothing else in this process refers to the memory until `Region` hands it out.
            let base = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    SIZE,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED,
                    memfd,
                    0,
                )?
            };
            NonNull::new(base.cast::<u8>())
                .map(|base| Self { base })
                .ok_or_else(|| io::Error::other("mmap returned a null mapping"))
        }

        /// The channel's turns in this memory.
        pub(crate) fn turns(&self) -> Turns<'_> {
            let base = self.base.as_ptr();
            // SAFETY: the mapping is page-aligned, SIZE long and lives as long as `self`
            // (unmapped in `drop`); the header's two u32s and the CAPACITY / 8 u64s after it
            // are in bounds and aligned for their atomic types, which have the layout of the
            // plain integers. The memory is only touched through these atomics in this
            // process; another process writing it concurrently is the case atomics are for.
            unsafe {
                let state = &*base.cast::<AtomicU32>();
                let len = &*base.add(4).cast::<AtomicU32>();
                let words =
                    std::slice::from_raw_parts(base.add(HEADER).cast::<AtomicU64>(), CAPACITY / 8);
                Turns::new(state, len, words)
            }
        }
    }

    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: `base` is the start of a mapping of SIZE bytes made in `map` and unmapped
            // only here; every reference handed out by `turns` borrows `self`, so none is left.
            let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), SIZE) };
        }
    }

    pub(super) fn offer(socket: &UnixStream, memfd: Option<&OwnedFd>) -> io::Result<()> {
        let fds = memfd.map(|fd| [fd.as_fd()]);
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if let Some(fds) = &fds {
            if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(io::Error::other("no room to send the channel's memfd"));
            }
        }
        let hello = if memfd.is_some() { HELLO } else { HELLO_SOCKET };
        let sent = rustix::net::sendmsg(
            socket,
            &[IoSlice::new(&[hello])],
            &mut control,
            SendFlags::empty(),
        )?;
        if sent == 1 {
            Ok(())
        } else {
            Err(io::ErrorKind::WriteZero.into())
        }
    }

    pub(super) fn accept(socket: &UnixStream) -> io::Result<Option<Region>> {
        let mut byte = [0u8; 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        if received.bytes != 1 || ![HELLO, HELLO_SOCKET].contains(&byte[0]) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the host did not open the channel",
            ));
        }
        let mut memfd = None;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                for fd in fds {
                    memfd.get_or_insert(fd);
                }
            }
        }
        match (byte[0] == HELLO, memfd) {
            // Mapped, then the descriptor is closed: the plugin never sees it.
            (true, Some(memfd)) => Region::map(&memfd).map(Some),
            (false, None) => Ok(None),
            // Announced and not received (a descriptor limit dropped it): the two sides would
            // not agree on the channel.
            (true, None) => Err(io::Error::other(
                "the host shared memory for the channel and its descriptor did not arrive \
                 (open_files_limit too low?)",
            )),
            (false, Some(_)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the host sent a descriptor it did not announce",
            )),
        }
    }
}

#[cfg(not(all(target_os = "linux", not(loom))))]
mod imp {
    use std::io::{self, Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    use super::{Turns, HELLO_SOCKET};

    /// No shared memory here: never constructed.
    pub(crate) enum Region {}

    impl Region {
        pub(crate) fn create() -> io::Result<(Self, OwnedFd)> {
            Err(io::ErrorKind::Unsupported.into())
        }

        pub(crate) fn turns(&self) -> Turns<'_> {
            match *self {}
        }
    }

    pub(super) fn offer(mut socket: &UnixStream, _: Option<&OwnedFd>) -> io::Result<()> {
        socket.write_all(&[HELLO_SOCKET])
    }

    pub(super) fn accept(mut socket: &UnixStream) -> io::Result<Option<Region>> {
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte)?;
        if byte[0] == HELLO_SOCKET {
            Ok(None)
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the host did not open the channel",
            ))
        }
    }
}

#[cfg(all(test, target_os = "linux", not(loom)))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_memfd_travels_sealed_and_both_mappings_share_the_turns() {
        let (host_socket, worker_socket) = UnixStream::pair().expect("pair");
        let (region, memfd) = Region::create().expect("created");
        offer(&host_socket, Some(&memfd)).expect("offered");
        // Whoever holds the memfd cannot shrink it under the host's mapping.
        assert!(rustix::fs::ftruncate(memfd.as_fd(), 4096).is_err());
        let theirs = accept(&worker_socket).expect("accepted").expect("shared");
        assert!(region.turns().put(b"across the mapping"));
        let mut out = Vec::new();
        assert!(theirs.turns().take(&mut out).expect("taken"));
        assert_eq!(out, b"across the mapping");
        assert_eq!(theirs.turns().capacity(), CAPACITY);

        // A host with nothing to share opens a socket-only channel.
        offer(&host_socket, None).expect("offered");
        assert!(accept(&worker_socket).expect("accepted").is_none());
    }
}
