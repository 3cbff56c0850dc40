//! Throwaway Redis servers for tests (filled in by the Redis cache work).
