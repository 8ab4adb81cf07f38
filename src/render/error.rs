use std::path::PathBuf;

/// What can go wrong while generating secrets, rendering templates or writing artifacts.
/// Every variant names the file or template involved.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot create the certificate {file}")]
    Certificate {
        file: &'static str,
        #[source]
        source: rcgen::Error,
    },

    #[error("{} is not usable: {reason}", path.display())]
    InvalidSecret { path: PathBuf, reason: String },

    #[error("cannot hash the registry password for {file}")]
    Bcrypt {
        file: &'static str,
        #[source]
        source: bcrypt::BcryptError,
    },

    #[error("cannot render the template {template}")]
    Template {
        template: String,
        #[source]
        source: minijinja::Error,
    },

    #[error("the user-data rendered from {template} is {size} bytes; EC2 accepts at most {limit}")]
    UserDataTooLarge {
        template: &'static str,
        size: usize,
        limit: usize,
    },

    #[error("cannot write the artifacts: {field} {value:?} {reason}")]
    InvalidFact {
        field: String,
        value: String,
        reason: &'static str,
    },

    #[error("unknown topology {0:?} (expected k3s, rke2, rke or docker)")]
    UnknownTopology(String),

    #[error("cannot write the artifacts: {0} is not known (has `provision apply` finished?)")]
    MissingFact(&'static str),
}
