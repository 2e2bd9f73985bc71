//! The program's operations by their names as bytes, for the host-function table's `service`
//! call: one lookup of `<service> NUL <operation>` under a small non-cryptographic hash, with no
//! UTF-8 check and no parsing (a hit means the bytes are the names the program registered,
//! which the registry hands back as text). The keys are the program's, fixed when the host is
//! built, so no plugin can choose what collides with what.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::registry::Registered;

/// The longest name the registry accepts, service or operation.
const MAX_NAME: usize = 64;

/// A word at a time, rotate, xor and multiply (the Fx hash rustc uses for its own tables): a
/// few cycles for names of a dozen bytes, where SipHash's setup and finish dominate.
#[derive(Default, Clone, Copy)]
pub(crate) struct NameHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl NameHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for NameHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let word = rest
                .iter()
                .rev()
                .fold(0u64, |word, b| (word << 8) | u64::from(*b));
            self.add(word);
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
}

/// One operation the program offers, under the names it registered.
pub(crate) struct Offering {
    pub(crate) service: &'static str,
    pub(crate) name: &'static str,
    pub(crate) registered: Registered,
}

/// Every operation the program offers, by `<service> NUL <operation>`.
#[derive(Default)]
pub(crate) struct OfferedIndex {
    by_names: HashMap<Box<[u8]>, Offering, BuildHasherDefault<NameHasher>>,
}

/// `service`, a NUL and `name` written into `buffer`: the key, or `None` when a name is longer
/// than any the registry accepts.
fn key<'b>(
    buffer: &'b mut [u8; 2 * MAX_NAME + 1],
    service: &[u8],
    name: &[u8],
) -> Option<&'b [u8]> {
    if service.len() > MAX_NAME || name.len() > MAX_NAME {
        return None;
    }
    let (s, n) = (service.len(), name.len());
    buffer[..s].copy_from_slice(service);
    buffer[s] = 0;
    buffer[s + 1..s + 1 + n].copy_from_slice(name);
    Some(&buffer[..s + 1 + n])
}

impl OfferedIndex {
    /// Adds an operation (the registry has checked its names and that it is new).
    pub(crate) fn insert(&mut self, offering: Offering) {
        let mut buffer = [0; 2 * MAX_NAME + 1];
        if let Some(key) = key(
            &mut buffer,
            offering.service.as_bytes(),
            offering.name.as_bytes(),
        ) {
            self.by_names.insert(key.into(), offering);
        }
    }

    /// The operation `name` of `service`, if the program offers it.
    #[inline]
    pub(crate) fn get(&self, service: &[u8], name: &[u8]) -> Option<&Offering> {
        let mut buffer = [0; 2 * MAX_NAME + 1];
        self.by_names.get(key(&mut buffer, service, name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_keeps_service_and_operation_apart() {
        let mut a = [0; 2 * MAX_NAME + 1];
        let mut b = [0; 2 * MAX_NAME + 1];
        assert_ne!(key(&mut a, b"ab", b"c"), key(&mut b, b"a", b"bc"));
        assert!(key(&mut a, &[b'a'; MAX_NAME + 1], b"c").is_none());
        let (mut h1, mut h2) = (NameHasher::default(), NameHasher::default());
        h1.write(b"probe\0ping");
        h2.write(b"probe\0pong");
        assert_ne!(h1.finish(), h2.finish());
    }
}
