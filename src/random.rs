//! Random tokens from the system CSPRNG (aws-lc-rs).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// `bytes` random bytes, base64url-encoded without padding.
pub(crate) fn token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system RNG does not fail on supported platforms; if it ever did, refuse to continue
    // with predictable values.
    if SystemRandom::new().fill(&mut buf).is_err() {
        std::process::abort();
    }
    base64url(&buf)
}

/// A request id: 8 random bytes as 16 lowercase hex digits.
pub(crate) fn hex_id() -> String {
    let mut buf = [0u8; 8];
    if SystemRandom::new().fill(&mut buf).is_err() {
        std::process::abort();
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// Base64url without padding.
pub(crate) fn base64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_sized() {
        let a = token(32);
        let b = token(32);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(base64url(b"hello"), "aGVsbG8");
    }
}
