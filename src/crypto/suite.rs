/// An AEAD suite. The numeric id is the byte stored in ciphertext headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Suite {
    /// AES-256-GCM with a random 96-bit nonce (the default: hardware-accelerated on x86-64 and ARMv8).
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439) with a random 96-bit nonce, for CPUs without AES instructions.
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305 with a random 192-bit nonce.
    XChaCha20Poly1305,
}

impl Suite {
    /// Every suite, in id order.
    pub const ALL: [Suite; 3] = [
        Suite::Aes256Gcm,
        Suite::ChaCha20Poly1305,
        Suite::XChaCha20Poly1305,
    ];

    /// The byte that identifies this suite in a ciphertext header.
    pub const fn id(self) -> u8 {
        match self {
            Suite::Aes256Gcm => 1,
            Suite::ChaCha20Poly1305 => 2,
            Suite::XChaCha20Poly1305 => 3,
        }
    }

    /// The suite with header byte `id`, if any.
    pub const fn from_id(id: u8) -> Option<Suite> {
        match id {
            1 => Some(Suite::Aes256Gcm),
            2 => Some(Suite::ChaCha20Poly1305),
            3 => Some(Suite::XChaCha20Poly1305),
            _ => None,
        }
    }

    /// Nonce length in bytes.
    pub const fn nonce_len(self) -> usize {
        match self {
            Suite::Aes256Gcm | Suite::ChaCha20Poly1305 => 12,
            Suite::XChaCha20Poly1305 => 24,
        }
    }

    /// Key length in bytes (32 for every suite).
    pub const fn key_len(self) -> usize {
        crate::secret::KEY_LEN
    }

    /// The suite's conventional name.
    pub const fn name(self) -> &'static str {
        match self {
            Suite::Aes256Gcm => "AES-256-GCM",
            Suite::ChaCha20Poly1305 => "ChaCha20-Poly1305",
            Suite::XChaCha20Poly1305 => "XChaCha20-Poly1305",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_none() {
        for suite in Suite::ALL {
            assert_eq!(Suite::from_id(suite.id()), Some(suite));
        }
        assert_eq!(Suite::from_id(0), None);
        assert_eq!(Suite::from_id(4), None);
    }
}
