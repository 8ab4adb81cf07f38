//! Integration tests: the real `provision` binary against a moto server behind a
//! recording, fault-injecting proxy. Each test gets its own emulator; see `harness`.

mod harness;
mod proxy;
