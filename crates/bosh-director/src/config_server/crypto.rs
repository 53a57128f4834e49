//! Encryption at rest for config server values: ChaCha20-Poly1305 (ring) under one 256-bit key
//! kept in `DATA_DIR/config_server.key` (base64, mode 0600), a fresh random nonce per value,
//! and the value's name as associated data, so a ciphertext copied onto another name's row
//! fails to open instead of handing out the wrong secret.

use base64::Engine;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::{Path, PathBuf};

use super::ConfigServerError;

/// The key file's name inside the data dir.
pub const KEY_FILE: &str = "config_server.key";

const KEY_LEN: usize = 32;

/// The sealing key. Its `Debug` never shows key material.
pub struct SealKey {
    key: LessSafeKey,
    path: PathBuf,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey").field("path", &self.path).finish()
    }
}

/// A sealed value as stored: base64 ciphertext (with its tag) and base64 nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub ciphertext: String,
    pub nonce: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl SealKey {
    /// Reads `DATA_DIR/config_server.key`, or creates it when `may_create` (no value has been
    /// stored yet: creating a key next to existing ciphertexts would only hide the loss).
    pub fn load_or_create(data_dir: &Path, may_create: bool) -> Result<SealKey, ConfigServerError> {
        let path = data_dir.join(KEY_FILE);
        let io_err = |source| ConfigServerError::KeyIo {
            path: path.clone(),
            source,
        };
        let bytes = match std::fs::read_to_string(&path) {
            Ok(text) => b64()
                .decode(text.trim())
                .map_err(|_| ConfigServerError::KeyInvalid {
                    path: path.clone(),
                    reason: "not base64".into(),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => {
                let mut bytes = vec![0u8; KEY_LEN];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| ConfigServerError::Random)?;
                crate::private_file::private_file_write(
                    &path,
                    &format!("{}\n", b64().encode(&bytes)),
                )
                .map_err(io_err)?;
                tracing::info!(path = %path.display(), "created the config server encryption key");
                bytes
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigServerError::KeyMissing { path });
            }
            Err(e) => return Err(io_err(e)),
        };
        SealKey::from_bytes(&bytes, path)
    }

    /// A key from raw bytes; `path` only names it in messages.
    pub fn from_bytes(bytes: &[u8], path: PathBuf) -> Result<SealKey, ConfigServerError> {
        if bytes.len() != KEY_LEN {
            return Err(ConfigServerError::KeyInvalid {
                path,
                reason: format!("expected {KEY_LEN} bytes, found {}", bytes.len()),
            });
        }
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| {
            ConfigServerError::KeyInvalid {
                path: path.clone(),
                reason: "rejected by the cipher".into(),
            }
        })?;
        Ok(SealKey {
            key: LessSafeKey::new(unbound),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Encrypts `plaintext`, bound to `name`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<Sealed, ConfigServerError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| ConfigServerError::Random)?;
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| ConfigServerError::Random)?;
        Ok(Sealed {
            ciphertext: b64().encode(&in_out),
            nonce: b64().encode(nonce),
        })
    }

    /// Decrypts a sealed value of `name`; `None` when it does not authenticate (another key,
    /// another name, or tampering).
    pub fn open(&self, name: &str, sealed: &Sealed) -> Option<Vec<u8>> {
        let nonce: [u8; NONCE_LEN] = b64().decode(&sealed.nonce).ok()?.try_into().ok()?;
        let mut in_out = b64().decode(&sealed.ciphertext).ok()?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut in_out,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_the_name() {
        let key = SealKey::from_bytes(&[7u8; KEY_LEN], "k".into()).unwrap();
        let sealed = key.seal("/d/dep/pw", b"hunter2").unwrap();
        assert!(!sealed.ciphertext.contains("hunter2"));
        assert_eq!(
            key.open("/d/dep/pw", &sealed).as_deref(),
            Some(&b"hunter2"[..])
        );
        assert_eq!(key.open("/d/dep/other", &sealed), None);
        let other = SealKey::from_bytes(&[8u8; KEY_LEN], "k".into()).unwrap();
        assert_eq!(other.open("/d/dep/pw", &sealed), None);
        // Two seals of one plaintext differ (fresh nonces).
        assert_ne!(key.seal("/d/dep/pw", b"hunter2").unwrap(), sealed);
    }

    #[test]
    fn key_file_is_created_owner_only_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let missing = SealKey::load_or_create(dir.path(), false).unwrap_err();
        assert!(matches!(missing, ConfigServerError::KeyMissing { .. }));
        let key = SealKey::load_or_create(dir.path(), true).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = key.seal("n", b"v").unwrap();
        let again = SealKey::load_or_create(dir.path(), false).unwrap();
        assert_eq!(again.open("n", &sealed).as_deref(), Some(&b"v"[..]));
        assert!(!format!("{again:?}").contains(&std::fs::read_to_string(again.path()).unwrap()));
    }
}
