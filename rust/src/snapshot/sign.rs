//! HMAC-SHA256 signing of whole snapshot files, and loading the key.
//!
//! The key is read once, at the edge (a file or an environment variable);
//! the writer and reader only ever see a [`SigningKey`]. Tags are compared in
//! constant time. This module never logs or formats key bytes.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{CoreError, CoreResult, ErrorKind};

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted: 16 bytes (128 bits), below which HMAC-SHA256 is
/// weaker than its tag and the key is more likely a typo than a secret.
pub const MIN_KEY_BYTES: usize = 16;
/// A key file larger than this is not a key (and is not read whole).
pub const MAX_KEY_BYTES: usize = 4096;

/// A secret HMAC key. `Debug` never shows the bytes.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({} bytes)", self.0.len())
    }
}

impl SigningKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> CoreResult<Self> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES || bytes.len() > MAX_KEY_BYTES {
            return Err(CoreError::invalid_args(format!(
                "snapshot signing key must be {MIN_KEY_BYTES}..={MAX_KEY_BYTES} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(SigningKey(bytes))
    }

    /// The file's bytes, with trailing ASCII whitespace (a final newline from
    /// an editor or `echo`) removed.
    pub fn from_file(path: &Path) -> CoreResult<Self> {
        use std::io::Read;
        let f = std::fs::File::open(path).map_err(|e| {
            CoreError::invalid_args(format!(
                "cannot open snapshot key file {}: {e}",
                path.display()
            ))
        })?;
        let mut bytes = Vec::new();
        f.take(MAX_KEY_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                CoreError::invalid_args(format!(
                    "cannot read snapshot key file {}: {e}",
                    path.display()
                ))
            })?;
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        Self::new(bytes)
    }

    /// The variable's value as UTF-8 bytes; `Ok(None)` when unset.
    pub fn from_env(var: &str) -> CoreResult<Option<Self>> {
        match std::env::var_os(var) {
            None => Ok(None),
            Some(v) => {
                let s = v
                    .into_string()
                    .map_err(|_| CoreError::invalid_args(format!("{var} is not valid UTF-8")))?;
                Self::new(s.into_bytes()).map(Some)
            }
        }
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        }
    }
}

/// A running HMAC over the bytes of a file.
pub(crate) struct Signer(HmacSha256);

impl Signer {
    pub fn new(key: &SigningKey) -> Self {
        Signer(key.mac())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn tag(self) -> [u8; 32] {
        self.0.finalize().into_bytes().into()
    }

    /// Constant-time comparison against the stored tag.
    pub fn verify(self, tag: &[u8]) -> CoreResult<()> {
        self.0.verify_slice(tag).map_err(|_| {
            CoreError::new(
                ErrorKind::SnapshotSignatureInvalid,
                "snapshot signature does not match (wrong key or modified file)",
            )
        })
    }
}
