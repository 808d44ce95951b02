//! The root of trust: the key that wraps every key-ring version and the store-integrity key.

use super::KeyError;
use crate::crypto::{Suite, TAG_LEN, Tag, default_provider, fill_random};
use crate::secret::{KEY_LEN, SecretKey};
use core::fmt;
use data_encoding::{BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD, HEXLOWER_PERMISSIVE};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// Wraps and unwraps the keys directly below the root (key-ring versions, the store-integrity key).
///
/// Nothing else in custodian sees root key bytes, so a cloud KMS (`Encrypt`/`Decrypt` with an
/// encryption context) or an HSM (PKCS#11 `C_WrapKey`/`C_UnwrapKey`) can implement this trait. Calls
/// may be remote and slow: the [`KeyManager`](super::KeyManager) makes them only when it loads a
/// ring version it has not unwrapped yet, when it rotates, and once at start-up; never per message.
///
/// `aad` is associated data that the wrap must authenticate: an unwrap with other `aad` must fail.
/// It names the key being wrapped (ring, version, purpose), so a blob moved to another row does
/// not unwrap.
pub trait RootKeyProvider: Send + Sync + fmt::Debug {
    /// Encrypts `key`, binding `aad`. The result is stored as is.
    fn wrap(&self, aad: &[u8], key: &SecretKey) -> Result<Vec<u8>, KeyError>;

    /// Reverses [`RootKeyProvider::wrap`]; fails with [`KeyError::RootUnwrap`] when `blob` or `aad`
    /// differ from what was wrapped, or the root key is another one.
    fn unwrap(&self, aad: &[u8], blob: &[u8]) -> Result<SecretKey, KeyError>;
}

/// Format byte of [`LocalRootKey`] blobs: AES-256-GCM, random 96-bit nonce.
const LOCAL_BLOB_V1: u8 = 1;
const NONCE_LEN: usize = 12;
/// `format || nonce || encrypted key || tag`.
const LOCAL_BLOB_LEN: usize = 1 + NONCE_LEN + KEY_LEN + TAG_LEN;

/// A root key held in this process, loaded from an environment variable or a key file.
///
/// The key is 32 bytes written as 64 hex digits or as base64 (standard or URL-safe, padded or not).
/// Wrapped blobs are `0x01 || nonce (12) || AES-256-GCM(key) (32) || tag (16)`, 61 bytes.
pub struct LocalRootKey {
    key: Box<dyn crate::crypto::AeadKey>,
    source: String,
}

impl LocalRootKey {
    /// Uses `key` as the root key (for tests and for callers that fetch it themselves).
    pub fn new(key: &SecretKey) -> Self {
        Self::with_source(key, "memory".into())
    }

    /// A fresh random root key that exists only in memory (tests, examples).
    pub fn random() -> Result<Self, KeyError> {
        let key = SecretKey::try_random().map_err(|_| KeyError::Random)?;
        Ok(Self::new(&key))
    }

    fn with_source(key: &SecretKey, source: String) -> Self {
        Self {
            key: default_provider().aead(Suite::Aes256Gcm).key(key),
            source,
        }
    }

    /// Reads the key from environment variable `var` (hex or base64).
    pub fn from_env(var: &str) -> Result<Self, KeyError> {
        let value = Zeroizing::new(std::env::var(var).map_err(|e| {
            KeyError::RootKey(format!(
                "environment variable `{var}` is {}; set it to 64 hex digits or base64 of 32 bytes",
                match e {
                    std::env::VarError::NotPresent => "not set",
                    std::env::VarError::NotUnicode(_) => "not valid UTF-8",
                }
            ))
        })?);
        let key = parse_key(&value)
            .map_err(|why| KeyError::RootKey(format!("environment variable `{var}`: {why}")))?;
        Ok(Self::with_source(&key, format!("env `{var}`")))
    }

    /// Reads the key from `path`, refusing a file that group or others may read or write.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let metadata = std::fs::metadata(path)
            .map_err(|e| KeyError::RootKey(format!("cannot read key file `{shown}`: {e}")))?;
        check_permissions(&metadata, &shown)?;
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| KeyError::RootKey(format!("cannot read key file `{shown}`: {e}")))?,
        );
        let key = parse_key(&text)
            .map_err(|why| KeyError::RootKey(format!("key file `{shown}`: {why}")))?;
        Ok(Self::with_source(&key, format!("file `{shown}`")))
    }

    /// Reads the key file at `path` as [`from_file`](Self::from_file) does, or, when there is no
    /// file there, creates one as [`generate_key_file`] does: the first start of a single-server
    /// deployment or a demo. Only a missing file leads to a new key; a file that cannot be read
    /// or parsed is an error, never replaced. Several servers sharing one store need one key:
    /// provision the file (or use [`from_env`](Self::from_env)) instead of racing to create it.
    pub fn from_file_or_generate(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate_key_file(path),
            _ => Self::from_file(path),
        }
    }

    /// Where the key came from, for diagnostics (`env `X``, `file `/etc/...``, `memory`).
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Creates a new key file at `path` with mode 0600 holding a fresh random key (base64), and returns
/// the key. Refuses to overwrite an existing file: losing a root key loses every key below it.
pub fn generate_key_file(path: impl AsRef<Path>) -> Result<LocalRootKey, KeyError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let key = SecretKey::try_random().map_err(|_| KeyError::Random)?;
    let mut text = Zeroizing::new(BASE64.encode(key.expose_secret()));
    text.push('\n');
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::RootKey(format!(
                "key file `{shown}` already exists; refusing to overwrite a root key"
            ))
        } else {
            KeyError::RootKey(format!("cannot create key file `{shown}`: {e}"))
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| KeyError::RootKey(format!("cannot write key file `{shown}`: {e}")))?;
    Ok(LocalRootKey::with_source(&key, format!("file `{shown}`")))
}

#[cfg(unix)]
fn check_permissions(metadata: &std::fs::Metadata, shown: &str) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::RootKeyPermissions {
            path: shown.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &std::fs::Metadata, _: &str) -> Result<(), KeyError> {
    Ok(())
}

/// Decodes 64 hex digits or base64 (any common alphabet and padding) of exactly 32 bytes.
fn parse_key(text: &str) -> Result<SecretKey, String> {
    let text = text.trim();
    let decoded = if text.len() == 2 * KEY_LEN {
        HEXLOWER_PERMISSIVE.decode(text.as_bytes()).ok()
    } else {
        [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD]
            .into_iter()
            .find_map(|encoding| encoding.decode(text.as_bytes()).ok())
    };
    let decoded = Zeroizing::new(decoded.ok_or_else(|| {
        "not 64 hex digits or base64 of 32 bytes (create one with `generate_key_file`)".to_owned()
    })?);
    SecretKey::from_slice(&decoded)
        .ok_or_else(|| format!("decodes to {} bytes, expected 32", decoded.len()))
}

impl RootKeyProvider for LocalRootKey {
    fn wrap(&self, aad: &[u8], key: &SecretKey) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce).map_err(|_| KeyError::Random)?;
        let mut body = Zeroizing::new(*key.expose_secret());
        let tag = self
            .key
            .seal_in_place(&nonce, aad, body.as_mut_slice())
            .map_err(|e| KeyError::RootProvider(e.to_string()))?;
        let mut blob = Vec::with_capacity(LOCAL_BLOB_LEN);
        blob.push(LOCAL_BLOB_V1);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(body.as_slice());
        blob.extend_from_slice(&tag);
        Ok(blob)
    }

    fn unwrap(&self, aad: &[u8], blob: &[u8]) -> Result<SecretKey, KeyError> {
        let fail = || KeyError::RootUnwrap("a key".into());
        let (&format, rest) = blob.split_first().ok_or_else(fail)?;
        if format != LOCAL_BLOB_V1 || blob.len() != LOCAL_BLOB_LEN {
            return Err(fail());
        }
        let (nonce, rest) = rest.split_at_checked(NONCE_LEN).ok_or_else(fail)?;
        let (body, tag) = rest.split_at_checked(KEY_LEN).ok_or_else(fail)?;
        let tag: Tag = tag.try_into().map_err(|_| fail())?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(body);
        self.key
            .open_in_place(nonce, aad, key.as_mut_slice(), &tag)
            .map_err(|_| fail())?;
        Ok(SecretKey::from_bytes(*key))
    }
}

impl fmt::Debug for LocalRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRootKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_base64_and_rejects_other_lengths() {
        let bytes = [0x3Cu8; 32];
        let hex = HEXLOWER_PERMISSIVE.encode(&bytes);
        assert_eq!(parse_key(&hex).unwrap().expose_secret(), &bytes);
        assert_eq!(
            parse_key(&hex.to_uppercase()).unwrap().expose_secret(),
            &bytes
        );
        for encoding in [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD] {
            let text = format!("  {}\n", encoding.encode(&bytes));
            assert_eq!(parse_key(&text).unwrap().expose_secret(), &bytes);
        }
        assert!(
            parse_key(&BASE64.encode(&[1u8; 31]))
                .unwrap_err()
                .contains("31 bytes")
        );
        assert!(parse_key("not a key").is_err());
        assert!(parse_key("").is_err());
    }

    #[test]
    fn wrap_binds_associated_data() {
        let root = LocalRootKey::random().unwrap();
        let key = SecretKey::try_random().unwrap();
        let blob = root.wrap(b"ring a v1", &key).unwrap();
        assert_eq!(blob.len(), LOCAL_BLOB_LEN);
        assert_eq!(
            root.unwrap(b"ring a v1", &blob).unwrap().expose_secret(),
            key.expose_secret()
        );
        assert!(matches!(
            root.unwrap(b"ring a v2", &blob),
            Err(KeyError::RootUnwrap(_))
        ));
        let other = LocalRootKey::random().unwrap();
        assert!(other.unwrap(b"ring a v1", &blob).is_err());
        let mut flipped = blob.clone();
        flipped[20] ^= 1;
        assert!(root.unwrap(b"ring a v1", &flipped).is_err());
        assert!(root.unwrap(b"ring a v1", &blob[..60]).is_err());
        assert!(root.unwrap(b"ring a v1", &[]).is_err());
    }

    #[test]
    fn from_file_or_generate_creates_once_then_reads_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let first = LocalRootKey::from_file_or_generate(&path).unwrap();
        let blob = first
            .wrap(b"ring a v1", &SecretKey::from_bytes([7; 32]))
            .unwrap();
        let again = LocalRootKey::from_file_or_generate(&path).unwrap();
        assert_eq!(
            again.unwrap(b"ring a v1", &blob).unwrap().expose_secret(),
            &[7; 32]
        );

        let broken = dir.path().join("broken.key");
        std::fs::write(&broken, "not a key\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(LocalRootKey::from_file_or_generate(&broken).is_err());
        assert_eq!(std::fs::read_to_string(&broken).unwrap(), "not a key\n");
    }

    #[test]
    fn debug_names_the_source_only() {
        let key = SecretKey::from_bytes([0xA7; 32]);
        let root = LocalRootKey::new(&key);
        let shown = format!("{root:?}");
        assert_eq!(shown, "LocalRootKey { source: \"memory\", .. }");
    }
}
