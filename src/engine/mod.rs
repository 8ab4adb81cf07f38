//! The engine: the desired graph, planning (diff against state and the live cloud) and
//! execution (a DAG with bounded concurrency). It talks to the cloud only through
//! [`crate::cloud::Cloud`] and to the user only through [`reporter::Reporter`]; no AWS SDK
//! type appears here.

pub mod executor;
pub mod graph;
pub mod late;
pub mod ownership;
pub mod plan;
pub mod reporter;

pub use executor::{execute, Cancel, Outcome, Settings, Step};
pub use plan::{make_plan, Action, ActionKind, Desired, Plan, PlanError, PlanInput};
pub use reporter::{Reporter, StepKind};

#[cfg(test)]
mod tests;
