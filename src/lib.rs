//! `provision`: builds the AWS infrastructure for an air-gapped Rancher server install.
//!
//! Layout (see README): `config` turns TOML into a resolved [`config::Config`];
//! `blueprint` turns that into the desired resource graph; `engine` diffs it against the
//! `state` and the live cloud and executes the plan through the [`cloud::Cloud`] trait;
//! `render` writes user-data and next-step artifacts; `ui` is everything the terminal sees.

pub mod blueprint;
pub mod cli;
pub mod cloud;
pub mod commands;
pub mod config;
pub mod engine;
pub mod images;
pub mod model;
pub mod names;
pub mod render;
pub mod state;
pub mod ui;
pub mod verify;
