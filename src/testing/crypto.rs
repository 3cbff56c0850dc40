//! Key material, JWT signing and the small encoders the mock provider needs.

use std::io;

use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
use serde_json::Value;

use super::SigningAlg;

/// One signing key with its key id and the public JWK members.
pub(super) struct SigningKey {
    pub(super) kid: String,
    material: Material,
}

/// The private key and the public JWK members of one algorithm.
enum Material {
    /// RSA-2048 for RS256: modulus and public exponent, base64url without padding.
    Rsa { pair: KeyPair, n: String, e: String },
    /// P-256 for ES256: the public point's coordinates, base64url without padding.
    Ec {
        pair: EcdsaKeyPair,
        x: String,
        y: String,
    },
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg_name())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key for `alg` (RSA-2048 or P-256) with a random key id.
    pub(super) fn generate(alg: SigningAlg) -> io::Result<SigningKey> {
        let material = match alg {
            SigningAlg::Rs256 => {
                let pair = KeyPair::generate(KeySize::Rsa2048)
                    .map_err(|_| io::Error::other("MockIdp: RSA key generation failed"))?;
                let public = pair.public_key();
                let n = b64url(public.modulus().big_endian_without_leading_zero());
                let e = b64url(public.exponent().big_endian_without_leading_zero());
                Material::Rsa { pair, n, e }
            }
            SigningAlg::Es256 => {
                let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| io::Error::other("MockIdp: P-256 key generation failed"))?;
                // The uncompressed point (SEC 1 §2.3.3): 0x04, then x and y, 32 bytes each.
                let point = pair.public_key().as_ref();
                let (x, y) = match point {
                    [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
                    _ => return Err(io::Error::other("MockIdp: unexpected P-256 public key")),
                };
                let (x, y) = (b64url(x), b64url(y));
                Material::Ec { pair, x, y }
            }
        };
        let kid = format!(
            "mock-{}",
            random_token(9).ok_or_else(|| io::Error::other("MockIdp: no randomness"))?
        );
        Ok(SigningKey { kid, material })
    }

    /// The JWS `alg` this key signs with.
    pub(super) fn alg_name(&self) -> &'static str {
        match self.material {
            Material::Rsa { .. } => "RS256",
            Material::Ec { .. } => "ES256",
        }
    }

    /// The public key as a JWK.
    pub(super) fn jwk(&self) -> Value {
        match &self.material {
            Material::Rsa { n, e, .. } => serde_json::json!({
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": self.kid,
                "n": n,
                "e": e,
            }),
            Material::Ec { x, y, .. } => serde_json::json!({
                "kty": "EC",
                "use": "sig",
                "alg": "ES256",
                "crv": "P-256",
                "kid": self.kid,
                "x": x,
                "y": y,
            }),
        }
    }

    /// The signature over `msg`: RSASSA-PKCS1-v1_5 with SHA-256, or ECDSA P-256 with SHA-256
    /// in the JWS form (r and s, 32 bytes each, RFC 7518 §3.4).
    fn sign(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.material {
            Material::Rsa { pair, .. } => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig).ok()?;
                Some(sig)
            }
            Material::Ec { pair, .. } => Some(pair.sign(&rng, msg).ok()?.as_ref().to_vec()),
        }
    }
}

/// How to put a JWT together (the knobs the misbehaviours turn). Signed shapes use the key's
/// algorithm (RS256 or ES256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JwtShape {
    /// Signed, with the key's `kid`.
    Normal,
    /// Signed, without a `kid` header.
    NoKid,
    /// Signed, with a `kid` the JWKS does not hold.
    UnknownKid,
    /// Signed, with a corrupted signature.
    BadSignature,
    /// `alg: none` and an empty signature.
    AlgNone,
    /// Signed, with the key's `kid` and `typ: logout+jwt` (a back-channel logout token).
    LogoutToken,
}

/// Builds a compact JWS over `claims`.
pub(super) fn jwt(key: &SigningKey, claims: &Value, shape: JwtShape) -> Option<String> {
    let alg = key.alg_name();
    let header = match shape {
        JwtShape::Normal | JwtShape::BadSignature => {
            serde_json::json!({"alg": alg, "typ": "JWT", "kid": key.kid})
        }
        JwtShape::NoKid => serde_json::json!({"alg": alg, "typ": "JWT"}),
        JwtShape::LogoutToken => {
            serde_json::json!({"alg": alg, "typ": "logout+jwt", "kid": key.kid})
        }
        JwtShape::UnknownKid => {
            serde_json::json!({"alg": alg, "typ": "JWT", "kid": "unknown-kid-not-in-jwks"})
        }
        JwtShape::AlgNone => serde_json::json!({"alg": "none", "typ": "JWT"}),
    };
    let header = serde_json::to_vec(&header).ok()?;
    let claims = serde_json::to_vec(claims).ok()?;
    let signing_input = format!("{}.{}", b64url(&header), b64url(&claims));
    if shape == JwtShape::AlgNone {
        return Some(format!("{signing_input}."));
    }
    let mut sig = key.sign(signing_input.as_bytes())?;
    if shape == JwtShape::BadSignature {
        let mid = sig.len() / 2;
        if let Some(b) = sig.get_mut(mid) {
            *b ^= 0x5a;
        }
    }
    Some(format!("{signing_input}.{}", b64url(&sig)))
}

/// `n` random bytes, base64url without padding.
pub(super) fn random_token(n: usize) -> Option<String> {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).ok()?;
    Some(b64url(&buf))
}

/// BASE64URL(SHA256(verifier)), the PKCE S256 transform (RFC 7636 §4.2).
pub(super) fn s256(verifier: &str) -> String {
    b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

/// Constant-time string comparison (for secrets).
pub(super) fn secure_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Base64url without padding (RFC 4648 §5).
pub(super) fn b64url(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(input)
}

/// Decodes standard base64 (RFC 4648 §4), padding optional. `None` on any malformed input.
pub(super) fn b64_std_decode(input: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(input).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64_std_decode("Zm9vYg==").as_deref(), Some(&b"foob"[..]));
        assert_eq!(b64_std_decode("Zm9vYg").as_deref(), Some(&b"foob"[..]));
        assert_eq!(b64_std_decode("+/8=").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(b64_std_decode("Z"), None);
        assert_eq!(b64_std_decode("Zm9v!"), None);
        assert_eq!(b64_std_decode("Zg==="), None);
    }

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
