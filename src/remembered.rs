//! The remembered sessions: tokens verified before, so that a repeat request costs one in-process
//! lookup instead of a JWT verification.
//!
//! Sharded maps under read-write locks, keyed by a fingerprint of the token's last bytes (the HMAC
//! signature: unpredictable without the key) and always compared in full. Only verified tokens are
//! stored. Each shard is bounded: when one is full its expired entries go, and if that is not
//! enough the shard is emptied (those sessions are simply verified again).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::identity::Identity;

const SHARDS: usize = 16;
/// How many trailing bytes of a token make its fingerprint.
const TAIL: usize = 8;

/// The fingerprint is already unpredictable: use it as the hash as it is.
#[derive(Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// What ties a remembered session to its identity-provider session, so that a back-channel
/// logout can drop it: its `sid:`/`sub:` revocation keys and when it was issued.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub(crate) sid_key: Option<Box<str>>,
    pub(crate) sub_key: Option<Box<str>>,
    pub(crate) issued_at: u64,
}

impl Principal {
    /// Whether a revocation of `key` for sessions issued at or before `before` covers it.
    pub(crate) fn covered_by(&self, key: &str, before: u64) -> bool {
        self.issued_at <= before
            && (self.sid_key.as_deref() == Some(key) || self.sub_key.as_deref() == Some(key))
    }
}

type Shard = HashMap<u64, (Box<str>, Identity, Principal), BuildHasherDefault<Passthrough>>;

pub(crate) struct Remembered {
    shards: Vec<RwLock<Shard>>,
    per_shard: usize,
}

fn fingerprint(b: &[u8]) -> u64 {
    let tail = &b[b.len().saturating_sub(TAIL)..];
    let mut fp = b.len() as u64;
    for &byte in tail {
        fp = fp.rotate_left(8) ^ u64::from(byte);
    }
    // Spread the bits so the shard index and the map's buckets use all of them.
    fp.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Remembered {
    /// At most about `capacity` sessions (0 remembers none).
    pub(crate) fn new(capacity: u64) -> Self {
        let per_shard = usize::try_from(capacity.div_ceil(SHARDS as u64)).unwrap_or(usize::MAX);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            per_shard,
        }
    }

    fn shard(&self, fp: u64) -> &RwLock<Shard> {
        &self.shards[(fp >> 60) as usize % SHARDS]
    }

    fn read(lock: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
        lock.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(lock: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
        lock.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity of `token`, if it was remembered (expired or not: the caller checks). Byte
    /// for byte: a hit is a token that is text.
    pub(crate) fn get(&self, token: &[u8]) -> Option<Identity> {
        let fp = fingerprint(token);
        let shard = Self::read(self.shard(fp));
        match shard.get(&fp) {
            Some((stored, identity, _)) if stored.as_bytes() == token => Some(identity.clone()),
            _ => None,
        }
    }

    /// Remembers a verified token. Entries expired at `now` make room first.
    pub(crate) fn insert(&self, token: &str, identity: Identity, principal: Principal, now: u64) {
        if self.per_shard == 0 {
            return;
        }
        let fp = fingerprint(token.as_bytes());
        let mut shard = Self::write(self.shard(fp));
        if shard.len() >= self.per_shard && !shard.contains_key(&fp) {
            shard.retain(|_, (_, id, _)| id.expires_at() > now);
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        shard.insert(fp, (token.into(), identity, principal));
    }

    /// Forgets `token`.
    pub(crate) fn remove(&self, token: &str) {
        let fp = fingerprint(token.as_bytes());
        let mut shard = Self::write(self.shard(fp));
        if shard
            .get(&fp)
            .is_some_and(|(stored, _, _)| **stored == *token)
        {
            shard.remove(&fp);
        }
    }

    /// Forgets every token of session `session_id`.
    pub(crate) fn remove_session(&self, session_id: &str) {
        for lock in &self.shards {
            Self::write(lock).retain(|_, (_, id, _)| id.session_id() != session_id);
        }
    }

    /// Forgets every session a revocation of `key` (a `sid:`/`sub:` key) for sessions issued at
    /// or before `before` covers.
    pub(crate) fn remove_principal(&self, key: &str, before: u64) {
        for lock in &self.shards {
            Self::write(lock).retain(|_, (_, _, p)| !p.covered_by(key, before));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| Self::read(s).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{IdentityData, UserRole};

    fn id(sid: &str, exp: u64) -> Identity {
        Identity::new(IdentityData {
            user_id: "u".into(),
            email: None,
            display_name: None,
            role: UserRole::InternalUser,
            team_ids: vec![],
            provider: None,
            attributes: serde_json::Map::new(),
            session_id: sid.into(),
            expires_at: exp,
        })
    }

    #[test]
    fn tokens_are_compared_in_full() {
        let r = Remembered::new(100);
        r.insert(
            "aaaa.bbbb.SIGNATURE",
            id("s1", 100),
            Principal::default(),
            0,
        );
        assert_eq!(r.get(b"aaaa.bbbb.SIGNATURE").unwrap().session_id(), "s1");
        // Same length and tail, different body: same fingerprint, not the same token.
        assert!(r.get(b"xxxx.yyyy.SIGNATURE").is_none());
        r.remove("xxxx.yyyy.SIGNATURE");
        assert!(r.get(b"aaaa.bbbb.SIGNATURE").is_some());
        r.remove("aaaa.bbbb.SIGNATURE");
        assert!(r.get(b"aaaa.bbbb.SIGNATURE").is_none());
    }

    #[test]
    fn bounded_and_expired_entries_make_room_first() {
        let r = Remembered::new(32);
        for i in 0..1000 {
            r.insert(
                &format!("token-{i:06}"),
                id(&format!("s{i}"), 10),
                Principal::default(),
                0,
            );
        }
        assert!(r.len() <= 32, "{}", r.len());
        // At `now` = 20 every stored entry is expired: inserting prunes them rather than
        // emptying the shard of live ones.
        r.insert("token-live", id("live", 100), Principal::default(), 20);
        assert!(r.get(b"token-live").is_some());
    }

    #[test]
    fn sessions_are_forgotten_everywhere() {
        let r = Remembered::new(100);
        r.insert("t1-aaaaaaaa", id("s1", 100), Principal::default(), 0);
        r.insert("t2-bbbbbbbb", id("s1", 100), Principal::default(), 0);
        r.insert("t3-cccccccc", id("s2", 100), Principal::default(), 0);
        r.remove_session("s1");
        assert!(r.get(b"t1-aaaaaaaa").is_none() && r.get(b"t2-bbbbbbbb").is_none());
        assert!(r.get(b"t3-cccccccc").is_some());
        let p = |sid: &str, iat: u64| Principal {
            sid_key: Some(format!("sid:idp|{sid}").into()),
            sub_key: Some("sub:idp|alice".into()),
            issued_at: iat,
        };
        r.insert("t4-dddddddd", id("s4", 100), p("x", 10), 0);
        r.insert("t5-eeeeeeee", id("s5", 100), p("y", 10), 0);
        r.insert("t6-ffffffff", id("s6", 100), p("y", 30), 0);
        r.remove_principal("sid:idp|x", 20);
        assert!(r.get(b"t4-dddddddd").is_none() && r.get(b"t5-eeeeeeee").is_some());
        // Issued after the bound: kept.
        r.remove_principal("sub:idp|alice", 20);
        assert!(r.get(b"t5-eeeeeeee").is_none() && r.get(b"t6-ffffffff").is_some());
        assert!(r.get(b"t3-cccccccc").is_some());
        let none = Remembered::new(0);
        none.insert("t", id("s", 100), Principal::default(), 0);
        assert!(none.get(b"t").is_none());
    }
}
