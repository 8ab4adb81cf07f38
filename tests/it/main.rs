//! Integration tests: the real `provision` binary against a moto server behind a
//! recording, fault-injecting proxy. Each test gets its own emulator; see `harness`.

mod artifacts;
mod bad_config;
mod checks;
mod contract;
mod crash;
mod datastores;
mod defaults;
mod destroy;
mod drift;
mod faults;
mod fidelity;
mod first_day;
mod harness;
mod in_place;
mod in_use;
mod interrupt;
mod k3s;
mod lock;
mod logging;
mod lost_replies;
mod neighbours;
mod planfile;
mod proxy;
mod rke2;
mod secrets;
mod ssm;
mod team_state;
mod topologies;
mod tty;
mod verify;
