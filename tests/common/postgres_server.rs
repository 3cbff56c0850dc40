//! A throwaway PostgreSQL server for tests (filled in by the PostgreSQL store work).
