//! The default verifier cache: a bounded, in-process moka cache with per-entry TTL.

/// The default verifier cache (to be written).
#[derive(Clone, Debug, Default)]
pub struct MokaVerifierCache {}
