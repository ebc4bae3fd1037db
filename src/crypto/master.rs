//! The master key that wraps every object's data key: `{data_dir}/master.key`
//! (or `s3.master_key_file`, so it can live outside the data directory and out of
//! its backups), mode 0600, generated at the first start — or the key itself in
//! `s3.master_key` (`DARKROOM_S3__MASTER_KEY`, from a secrets store), never
//! written anywhere. A rotation
//! (`darkroom keys rotate-master`) writes the next key beside it as
//! `master.key.next` before re-wrapping, so a crash at any point leaves every data
//! key unwrappable by one of the two files; the [`Keyring`] loads both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};

const HEADER: &str = "darkroom-master-key-v1";

/// A master key problem, naming the file or key id.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a darkroom master key ({message})")]
    Format { path: PathBuf, message: String },
    #[error(
        "s3.master_key: not a master key ({message}); give 32 random bytes in base64 \
         (`openssl rand -base64 32`) or the text of a master.key file"
    )]
    Inline { message: String },
    #[error(
        "this data key is wrapped by master key {wanted}, which is not loaded (loaded: {loaded}); \
         point s3.master_key_file at the right file"
    )]
    UnknownKey { wanted: String, loaded: String },
    #[error("a wrapped data key does not open with master key {0} (corrupt metadata?)")]
    Unwrap(String),
}

struct Key {
    id: String,
    raw: [u8; 32],
}

/// The master keys loaded: the current one wraps, any opens what it wrapped.
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<Vec<Key>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("ids", &self.ids()).finish()
    }
}

/// The file beside `path` a rotation writes first.
pub fn next_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".next");
    PathBuf::from(s)
}

impl Keyring {
    /// Loads the key at `path` (and a rotation's `path.next`, which then is
    /// current), creating `path` when neither exists.
    pub fn load_or_create(path: &Path) -> Result<Self, MasterKeyError> {
        let next = next_path(path);
        let mut keys = Vec::new();
        if next.exists() {
            keys.push(read_key(&next)?);
        }
        if path.exists() {
            keys.push(read_key(path)?);
        } else if keys.is_empty() {
            let key = new_key();
            write_key(path, &key)?;
            tracing::info!(path = %path.display(), id = %key.id, "generated the master key for encryption at rest");
            keys.push(key);
        }
        Ok(Self { keys: Arc::new(keys) })
    }

    /// The key given as text (`s3.master_key`): 32 bytes of base64, or a
    /// master.key file's whole text (so a key moves from the file to a secrets
    /// store as it is, objects and all).
    pub fn from_text(text: &str) -> Result<Self, MasterKeyError> {
        let raw = parse_key(text, true).map_err(|message| MasterKeyError::Inline {
            message: message.into(),
        })?;
        Ok(Self {
            keys: Arc::new(vec![Key {
                id: key_id(&raw),
                raw,
            }]),
        })
    }

    /// A keyring of one fresh key that is not stored anywhere (tests).
    pub fn ephemeral() -> Self {
        Self {
            keys: Arc::new(vec![new_key()]),
        }
    }

    /// The id of the key new data keys are wrapped with.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Every loaded key's id, current first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// Wraps `data_key` with the current master key: (key id, base64 blob).
    pub fn wrap(&self, data_key: &[u8; 32]) -> (String, String) {
        let key = &self.keys[0];
        (key.id.clone(), wrap_with(&key.raw, &key.id, data_key))
    }

    /// Opens a data key wrapped by [`Keyring::wrap`] under the key `key_id`.
    pub fn unwrap(&self, key_id: &str, wrapped: &str) -> Result<[u8; 32], MasterKeyError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| MasterKeyError::UnknownKey {
                wanted: key_id.to_string(),
                loaded: self.ids().join(", "),
            })?;
        unwrap_with(&key.raw, &key.id, wrapped).ok_or_else(|| MasterKeyError::Unwrap(key_id.to_string()))
    }
}

/// Wraps `data_key` with `raw` (an SSE-C client's key): base64(nonce || sealed).
pub fn wrap_with(raw: &[u8; 32], label: &str, data_key: &[u8; 32]) -> String {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut buf = data_key.to_vec();
    aead(raw)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(label.as_bytes()),
            &mut buf,
        )
        .unwrap_or_else(|_| unreachable!("sealing 32 bytes cannot fail"));
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    B64.encode(out)
}

/// Opens what [`wrap_with`] wrapped; `None` for a wrong key or damaged blob.
pub fn unwrap_with(raw: &[u8; 32], label: &str, wrapped: &str) -> Option<[u8; 32]> {
    let raw_wrapped = B64.decode(wrapped).ok()?;
    if raw_wrapped.len() < NONCE_LEN {
        return None;
    }
    let (nonce, rest) = raw_wrapped.split_at(NONCE_LEN);
    let mut buf = rest.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let plain = aead(raw)
        .open_in_place(nonce, Aad::from(label.as_bytes()), &mut buf)
        .ok()?;
    plain.try_into().ok()
}

/// A fresh random data key.
pub fn new_data_key() -> [u8; 32] {
    rand::random()
}

fn aead(raw: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, raw).unwrap_or_else(|_| unreachable!("32-byte key")))
}

fn new_key() -> Key {
    let raw: [u8; 32] = rand::random();
    Key {
        id: key_id(&raw),
        raw,
    }
}

/// A key's id: the first 8 bytes of SHA-256 of it, hex (says which key, reveals nothing).
fn key_id(raw: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(raw)[..8])
}

fn read_key(path: &Path) -> Result<Key, MasterKeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| MasterKeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = parse_key(&text, false).map_err(|message| MasterKeyError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    })?;
    Ok(Key {
        id: key_id(&raw),
        raw,
    })
}

/// A key's 32 bytes from a key file's text (`darkroom-master-key-v1 BASE64`), or,
/// with `bare`, from the base64 alone too.
fn parse_key(text: &str, bare: bool) -> Result<[u8; 32], &'static str> {
    let mut words = text.split_whitespace();
    let first = words.next();
    let b64 = if first == Some(HEADER) {
        words.next()
    } else if bare {
        first
    } else {
        return Err("the first word is not darkroom-master-key-v1");
    };
    b64.and_then(|b| B64.decode(b).ok())
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or("the key is not 32 bytes of base64")
}

fn write_key(path: &Path, key: &Key) -> Result<(), MasterKeyError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| MasterKeyError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let text = format!("{HEADER} {}\n", B64.encode(key.raw));
    crate::tls::self_signed::write_private(path, text.as_bytes()).map_err(|source| MasterKeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Rotation, step 1: writes a new key as `path.next` and returns the keyring that
/// has it current (and the old key for what is not re-wrapped yet).
pub fn begin_rotation(path: &Path) -> Result<Keyring, MasterKeyError> {
    let next = next_path(path);
    if !next.exists() {
        write_key(&next, &new_key())?;
    }
    Keyring::load_or_create(path)
}

/// Rotation, last step (every data key re-wrapped): `path.next` becomes `path`.
pub fn finish_rotation(path: &Path) -> Result<(), MasterKeyError> {
    let next = next_path(path);
    std::fs::rename(&next, path).map_err(|source| MasterKeyError::Io { path: next, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_as_text_is_the_same_key_as_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let ring = Keyring::load_or_create(&path).unwrap();
        let (id, wrapped) = ring.wrap(&[7; 32]);
        let text = std::fs::read_to_string(&path).unwrap();
        let bare = text.split_whitespace().nth(1).unwrap().to_owned();
        for given in [text.as_str(), bare.as_str()] {
            let from_text = Keyring::from_text(given).unwrap();
            assert_eq!(from_text.ids(), vec![id.clone()]);
            assert_eq!(from_text.unwrap(&id, &wrapped).unwrap(), [7; 32]);
        }
        for bad in ["", "c2hvcnQ=", "darkroom-master-key-v1"] {
            let err = Keyring::from_text(bad).unwrap_err().to_string();
            assert!(err.starts_with("s3.master_key: not a master key"), "{err}");
        }
        // The message never echoes what was given.
        let err = Keyring::from_text("secretsecretsecret").unwrap_err().to_string();
        assert!(!err.contains("secretsecretsecret"), "{err}");
    }

    #[test]
    fn wrap_then_unwrap_and_the_key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let ring = Keyring::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let data = new_data_key();
        let (id, wrapped) = ring.wrap(&data);
        let again = Keyring::load_or_create(&path).unwrap();
        assert_eq!(again.unwrap(&id, &wrapped).unwrap(), data);
        let other = Keyring::ephemeral();
        assert!(matches!(
            other.unwrap(&id, &wrapped),
            Err(MasterKeyError::UnknownKey { .. })
        ));
        let rotated = begin_rotation(&path).unwrap();
        assert_ne!(rotated.current_id(), id);
        assert_eq!(
            rotated.unwrap(&id, &wrapped).unwrap(),
            data,
            "the old key still opens"
        );
        finish_rotation(&path).unwrap();
        assert_eq!(
            Keyring::load_or_create(&path).unwrap().ids(),
            vec![rotated.current_id().to_string()]
        );
    }
}
