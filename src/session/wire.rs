//! The first verification of a session token, without the general JWT machinery.
//!
//! Every session token this crate issues has the same header (`{"typ":"JWT","alg":"HS256"}`,
//! base64url): a token with exactly that header is verified here, with the HMAC key built once
//! (jsonwebtoken builds it on every call), one base64 decode of the payload and one JSON parse
//! into a struct that borrows what it only compares. Any other header goes to jsonwebtoken as
//! before ([`OtherHeader`]), so a header we never write is judged exactly as it always
//! was (and, as no such token is ever issued, refused: its signature cannot match).
//!
//! What is checked, the same as jsonwebtoken with the codec's `Validation` and the typed
//! `SessionClaims` did: three base64url (no padding, canonical) segments, the HMAC-SHA256 of
//! `header.payload` (constant-time compare), a JSON object holding every session field with its
//! type (no field twice, unknown fields ignored), `iss` = `tower-sso`, `aud` =
//! `tower-sso:session` (a string), `exp` and `iat` whole seconds. `nbf` is not checked (it never
//! was). Expiry and revocation are the caller's.

use std::borrow::Cow;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{ISSUER, SESSION_AUDIENCE, SessionParts};
use crate::identity::{IdentityData, UserRole};

/// What the fast decoder needs, built once per codec.
pub(super) struct WireKey {
    key: hmac::Key,
    /// The base64url header of every token we issue.
    header: String,
}

impl WireKey {
    /// `key`: the derived signing key; `header`: the JSON header jsonwebtoken writes.
    pub(super) fn new(key: &[u8], header_json: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            header: URL_SAFE_NO_PAD.encode(header_json),
        }
    }
}

/// The token's header is not the one we write: it is for the general decoder.
pub(super) struct OtherHeader;

/// The session claims as they are on the wire. Strings that are only compared are borrowed
/// when they hold no escape; the ones the identity keeps are owned from the start.
#[derive(Deserialize)]
struct WireClaims<'a> {
    user_id: String,
    // Required and typed, as in `SessionClaims`; not needed by the gate.
    #[serde(rename = "key", borrow)]
    _key: Cow<'a, str>,
    user_email: Option<String>,
    user_role: UserRole,
    #[serde(rename = "login_method", borrow)]
    _login_method: Cow<'a, str>,
    #[serde(rename = "premium_user")]
    _premium_user: bool,
    #[serde(rename = "auth_header_name", borrow)]
    _auth_header_name: Cow<'a, str>,
    #[serde(rename = "disabled_non_admin_personal_key_creation")]
    _disabled_non_admin_personal_key_creation: bool,
    #[serde(rename = "server_root_path", borrow)]
    _server_root_path: Cow<'a, str>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    teams: Vec<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    attrs: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    idp: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    jti: String,
    iat: u64,
    exp: u64,
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow)]
    aud: Cow<'a, str>,
    /// Not checked; named so that a token holding it twice is refused, as jsonwebtoken does.
    #[serde(rename = "nbf", default)]
    _nbf: Option<IgnoredAny>,
}

/// Verifies `token` if it has our header (see the module docs): `Ok(None)` when it has our
/// header but is not a valid session token of ours. `token` is at most `MAX_TOKEN_LEN` bytes
/// (the caller checks).
pub(super) fn decode(token: &str, key: &WireKey) -> Result<Option<SessionParts>, OtherHeader> {
    // Split as jsonwebtoken does: the signature after the last `.`, the payload after the one
    // before; the header is everything before that (so a fourth segment lands in the header).
    let Some((message, signature)) = token.rsplit_once('.') else {
        return Err(OtherHeader);
    };
    let Some((header, payload)) = message.rsplit_once('.') else {
        return Err(OtherHeader);
    };
    if header != key.header {
        return Err(OtherHeader);
    }
    Ok(verified_claims(message, payload, signature, key))
}

fn verified_claims(
    message: &str,
    payload: &str,
    signature: &str,
    key: &WireKey,
) -> Option<SessionParts> {
    // A SHA-256 tag is 32 bytes (43 characters); a longer one does not fit and is refused.
    let mut tag = [0u8; 48];
    let n = URL_SAFE_NO_PAD.decode_slice(signature, &mut tag).ok()?;
    hmac::verify(&key.key, message.as_bytes(), &tag[..n]).ok()?;
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: WireClaims<'_> = serde_json::from_slice(&json).ok()?;
    if claims.iss != ISSUER || claims.aud != SESSION_AUDIENCE {
        return None;
    }
    Some(SessionParts {
        data: IdentityData {
            user_id: claims.user_id,
            email: claims.user_email,
            display_name: claims.name,
            role: claims.user_role,
            team_ids: claims.teams,
            provider: claims.provider,
            attributes: claims.attrs,
            session_id: claims.jti,
            expires_at: claims.exp,
        },
        issued_at: claims.iat,
        idp: claims.idp,
        sid: claims.sid,
        sub: claims.sub,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{
        NewSession, SessionClaims, SessionCodec, SessionError, SessionFields, derive_key,
    };
    use super::*;
    use crate::clock::Clock;
    use serde_json::{Value, json};
    use std::time::Duration;

    const SECRET: &[u8] = b"wire-test-secret-0123456789abcdef";
    const OUR_HEADER: &str = r#"{"typ":"JWT","alg":"HS256"}"#;

    fn codec(clock: Clock) -> SessionCodec {
        SessionCodec::new(
            SECRET,
            Duration::from_secs(3600),
            SessionFields::default(),
            clock,
            0,
        )
    }

    fn b64(data: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(data)
    }

    /// A token with the given header and payload text, signed with the session key.
    fn sign(header: &str, payload: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &derive_key(SECRET, "session"));
        let message = format!("{}.{}", b64(header), b64(payload));
        let tag = hmac::sign(&key, message.as_bytes());
        format!("{message}.{}", b64(tag))
    }

    /// The claims of a real session, as JSON.
    fn claims(c: &SessionCodec) -> serde_json::Map<String, Value> {
        let (token, _) = c
            .issue(NewSession {
                user_id: "alice".into(),
                email: Some("alice@example.com".into()),
                display_name: Some("Alice".into()),
                role: crate::identity::UserRole::InternalUser,
                team_ids: vec!["t1".into(), "t2".into()],
                provider: Some("generic".into()),
                attributes: serde_json::Map::new(),
            })
            .unwrap();
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    /// What the fast decoder says (it must take the token: our header) and what jsonwebtoken
    /// with the codec's validation and `SessionClaims` says, as comparable values.
    fn both(c: &SessionCodec, token: &str) -> (Option<Value>, Option<Value>) {
        let parts = |p: SessionParts| json!({"data": p.data, "iat": p.issued_at, "idp": p.idp, "sid": p.sid, "sub": p.sub});
        let Ok(fast) = decode(token, &c.inner.wire) else {
            panic!("our header, yet not taken by the fast decoder: {token}");
        };
        let reference =
            jsonwebtoken::decode::<SessionClaims>(token, &c.inner.decoding, &c.inner.validation)
                .ok()
                .map(|d| parts(SessionParts::from(d.claims)));
        (fast.map(parts), reference)
    }

    #[test]
    fn the_header_we_issue_is_the_one_recognised() {
        let c = codec(Clock::manual());
        assert_eq!(c.inner.wire.header, b64(OUR_HEADER));
        let (token, _) = c.issue(crate::session::tests_support::alice()).unwrap();
        assert!(token.starts_with(&format!("{}.", c.inner.wire.header)));
        assert!(matches!(decode(&token, &c.inner.wire), Ok(Some(_))));
    }

    #[test]
    fn same_verdict_and_claims_as_jsonwebtoken() {
        let c = codec(Clock::manual());
        let base = claims(&c);
        let with = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut m = base.clone();
            edit(&mut m);
            serde_json::to_string(&m).unwrap()
        };
        let mut payloads: Vec<(String, String)> = vec![
            ("as issued".into(), with(&|_| {})),
            (
                "extra claims".into(),
                with(&|m| {
                    m.insert("extra".into(), json!({"a": [1, 2, {"b": null}]}));
                    m.insert("nbf".into(), json!(1));
                }),
            ),
            (
                "escapes".into(),
                with(&|m| {
                    m.insert("server_root_path".into(), json!("/a\"b\\c\u{e9}"));
                    m.insert("user_id".into(), json!("al\u{ef}ce\n"));
                    m.insert("key".into(), json!("k\u{1F600}"));
                }),
            ),
            (
                "linked".into(),
                with(&|m| {
                    m.insert("idp".into(), json!("okta"));
                    m.insert("sid".into(), json!("sid-1"));
                    m.insert("sub".into(), json!("alice-sub"));
                    m.insert("attrs".into(), json!({"dept": "R&D", "level": 3}));
                }),
            ),
            (
                "nulls for options".into(),
                with(&|m| {
                    m.insert("user_email".into(), Value::Null);
                    m.insert("name".into(), Value::Null);
                }),
            ),
        ];
        for field in [
            "user_id",
            "key",
            "user_email",
            "user_role",
            "login_method",
            "premium_user",
            "auth_header_name",
            "disabled_non_admin_personal_key_creation",
            "server_root_path",
            "name",
            "teams",
            "provider",
            "jti",
            "iat",
            "exp",
            "iss",
            "aud",
        ] {
            payloads.push((
                format!("without {field}"),
                with(&|m| {
                    m.remove(field);
                }),
            ));
            payloads.push((
                format!("{field} of the wrong type"),
                with(&|m| {
                    let wrong = match m.get(field) {
                        Some(Value::String(_)) => json!(7),
                        _ => json!({"x": "y"}),
                    };
                    m.insert(field.into(), wrong);
                }),
            ));
        }
        for (name, value) in [
            ("user_role", json!("emperor")),
            ("exp", json!(1.5e12)),
            ("exp", json!(-1)),
            ("exp", json!("9999999999")),
            ("iat", json!(1.0)),
            ("aud", json!(["tower-sso:session"])),
            ("aud", json!("tower-sso:other")),
            ("aud", json!("")),
            ("iss", json!(["tower-sso"])),
            ("iss", json!("tower-sso ")),
            ("teams", json!(["a", 1])),
            ("premium_user", json!("true")),
        ] {
            payloads.push((
                format!("{name} = {value}"),
                with(&|m| {
                    m.insert(name.into(), value.clone());
                }),
            ));
        }
        // Duplicate claims: text edits, a JSON map cannot hold them.
        let issued = with(&|_| {});
        for dup in [
            r#""exp":1,"#,
            r#""user_id":"mallory","#,
            r#""aud":"tower-sso:session","#,
            r#""nbf":1,"nbf":2,"#,
            r#""unknown":1,"unknown":2,"#,
        ] {
            payloads.push((
                format!("duplicate {dup}"),
                issued.replacen('{', &format!("{{{dup}"), 1),
            ));
        }
        for (name, text) in [
            ("trailing garbage", format!("{issued}x")),
            ("trailing space", format!("{issued} \n")),
            ("two objects", format!("{issued}{issued}")),
            ("an array", format!("[{issued}]")),
            ("a string", "\"x\"".into()),
            ("empty", String::new()),
            ("cut", issued[..issued.len() - 1].to_owned()),
        ] {
            payloads.push((name.into(), text));
        }
        let mut accepted = 0;
        for (name, payload) in &payloads {
            let (fast, reference) = both(&c, &sign(OUR_HEADER, payload));
            assert_eq!(fast, reference, "{name}: {payload}");
            accepted += usize::from(fast.is_some());
        }
        // Both kinds of verdict were exercised.
        assert!(
            accepted >= 5 && accepted < payloads.len() - 20,
            "{accepted}"
        );
    }

    #[test]
    fn other_headers_are_judged_as_before() {
        let c = codec(Clock::manual());
        let payload = serde_json::to_string(&claims(&c)).unwrap();
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"typ":"JWT","alg":"RS256"}"#,
            r#"{"typ":"JWT","alg":"HS512"}"#,
            r#"{"typ":"JWT","alg":"HS256","crit":["exp"]}"#,
            r#"{"typ":"JWT","alg":"HS256","b64":false}"#,
            r#"{"typ":"JWT"}"#,
            "not json",
        ] {
            let token = sign(header, &payload);
            assert!(decode(&token, &c.inner.wire).is_err(), "{header}");
            assert_eq!(c.verify(&token), Err(SessionError::Invalid), "{header}");
        }
        // `alg: none` with no signature at all.
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&payload));
        assert_eq!(c.verify(&none), Err(SessionError::Invalid));
        // A header jsonwebtoken accepts but we never write (no `typ`, another order) still
        // verifies when signed with our key: the general decoder judges it, as it always did.
        for header in [
            r#"{"alg":"HS256"}"#,
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"typ":"JWT","alg":"HS256"} "#,
        ] {
            let token = sign(header, &payload);
            assert!(decode(&token, &c.inner.wire).is_err());
            assert!(c.verify(&token).is_ok(), "{header}");
        }
    }

    #[test]
    fn tampered_or_badly_encoded_tokens_are_refused() {
        let c = codec(Clock::manual());
        let (token, _) = c.issue(crate::session::tests_support::alice()).unwrap();
        let (message, signature) = token.rsplit_once('.').unwrap();
        let (header, payload) = message.rsplit_once('.').unwrap();
        let refused = |t: &str| {
            assert!(matches!(decode(t, &c.inner.wire), Ok(None) | Err(_)), "{t}");
            assert_eq!(
                codec(Clock::manual()).verify(t),
                Err(SessionError::Invalid),
                "{t}"
            );
        };
        // Padding, foreign alphabets, whitespace, cut or doubled signatures.
        refused(&format!("{token}="));
        refused(&format!("{header}.{payload}=.{signature}"));
        refused(&format!("{header}.+{}.{signature}", &payload[1..]));
        refused(&format!("{header}.{payload} .{signature}"));
        refused(&format!(
            "{header}.{payload}.{}",
            &signature[..signature.len() - 1]
        ));
        refused(&format!("{header}.{payload}.{signature}{signature}"));
        refused(&format!("{header}.{payload}."));
        refused(&format!("{header}.{payload}"));
        refused(&format!("{header}.x.{payload}.{signature}"));
        // The last character of a 43-character tag carries 2 spare bits: setting one is a
        // different encoding of the same tag, and is refused like any non-canonical base64.
        let last = signature.as_bytes()[signature.len() - 1];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let i = alphabet.iter().position(|&a| a == last).unwrap();
        let sloppy = alphabet[i ^ 1] as char;
        refused(&format!(
            "{header}.{payload}.{}{sloppy}",
            &signature[..signature.len() - 1]
        ));
        // Every single-character change of the payload.
        for i in 0..payload.len() {
            let mut p = payload.as_bytes().to_vec();
            p[i] = if p[i] == b'A' { b'B' } else { b'A' };
            refused(&format!(
                "{header}.{}.{signature}",
                String::from_utf8(p).unwrap()
            ));
        }
        // Another key.
        let other = SessionCodec::new(
            b"another-secret-another-secret-xx",
            Duration::from_secs(3600),
            SessionFields::default(),
            Clock::manual(),
            0,
        );
        assert!(matches!(decode(&token, &other.inner.wire), Ok(None)));
    }

    #[test]
    fn expiry_boundary() {
        let clock = Clock::manual();
        let c = codec(clock.clone());
        let token_expiring = |exp: u64| {
            let mut m = claims(&c);
            m.insert("exp".into(), json!(exp));
            sign(OUR_HEADER, &serde_json::to_string(&m).unwrap())
        };
        // `exp` is the first second the session is no longer valid. (The manual clock follows
        // the system clock: only "now or later" is certain, hence no test of `exp = now + 1`.)
        let now = clock.now();
        assert_eq!(c.verify(&token_expiring(now)), Err(SessionError::Expired));
        assert_eq!(
            c.verify(&token_expiring(now - 1)),
            Err(SessionError::Expired)
        );
        let t = token_expiring(now + 3600);
        assert!(c.verify(&t).is_ok());
        clock.advance(3600);
        assert_eq!(c.verify(&t), Err(SessionError::Expired));
    }
}
