//! Fingerprints of create requests, stored beside transaction tokens so a
//! token reused for a different request is caught.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A SHA-256 digest of a create request's content.
///
/// It is stored in the database next to the token, so it must be stable
/// across processes and releases: it hashes the value's JSON encoding
/// (deterministic for structs, whose fields serialize in declaration order).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `value`'s serde representation.
    ///
    /// # Panics
    /// If `value`'s `Serialize` implementation fails, which derived
    /// implementations of plain data never do (maps with non-string keys do).
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        // Streamed into the digest: no buffer to allocate per create.
        let mut digest = Digesting(Sha256::new());
        serde_json::to_writer(&mut digest, value)
            .expect("fingerprinted values serialize to JSON: plain data, string map keys");
        Self(digest.0.finalize().into())
    }

    /// Rebuilds a fingerprint read back from storage.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest, for storage.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A digest fed as a writer.
struct Digesting(Sha256);

impl std::io::Write for Digesting {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint(")?;
        for byte in &self.0[..6] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_have_equal_fingerprints() {
        assert_eq!(Fingerprint::of(&("ada", 3)), Fingerprint::of(&("ada", 3)));
    }

    #[test]
    fn different_values_have_different_fingerprints() {
        assert_ne!(Fingerprint::of(&("ada", 3)), Fingerprint::of(&("ada", 4)));
    }

    #[test]
    fn is_stable_across_releases() {
        // Stored fingerprints must keep matching: this digest (SHA-256 of the
        // JSON `["ada",3]`) may never change.
        let fp = Fingerprint::of(&("ada", 3));
        assert_eq!(format!("{fp:?}"), "Fingerprint(41993b2e8c6e..)");
    }

    #[test]
    fn round_trips_through_bytes() {
        let fp = Fingerprint::of("x");
        assert_eq!(Fingerprint::from_bytes(*fp.as_bytes()), fp);
    }
}
