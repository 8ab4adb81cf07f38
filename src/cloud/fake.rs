//! In-memory fake cloud.
