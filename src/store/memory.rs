//! The default user store: in memory, for one process.

/// The default user store (to be written).
#[derive(Clone, Debug, Default)]
pub struct MemoryUserStore {}
