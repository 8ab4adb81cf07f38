//! The boundary between the engine and a cloud. The engine only calls [`Cloud`]; the AWS
//! implementation lives in [`aws`] and an in-memory fake for tests in [`fake`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{Kind, LogicalId, Observed, Resolved, Spec};

#[cfg(feature = "aws")]
pub mod aws;
pub mod fake;

/// How a cloud call failed. Keeps the provider's error code so callers can decide between
/// retrying and failing.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// Throttling, 5xx, connection trouble: worth another try later.
    #[error("{operation}: transient error {code}: {message}")]
    Transient {
        operation: String,
        code: String,
        message: String,
    },
    /// The resource is still in use by something AWS has not released yet
    /// (`DependencyViolation`, `ResourceInUse`): worth waiting for.
    #[error("{operation}: {code}: {message}")]
    InUse {
        operation: String,
        code: String,
        message: String,
    },
    /// Anything else the cloud refused.
    #[error("{operation}: {code}: {message}")]
    Api {
        operation: String,
        code: String,
        message: String,
    },
    /// A wait ran out of time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout { what: String, waited: Duration },
    /// A precondition the tool checks itself (e.g. a DNS record owned by someone else).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    MissingRef(#[from] crate::model::MissingRef),
    /// The step was cancelled (second Ctrl-C or shutdown).
    #[error("cancelled")]
    Cancelled,
}

impl CloudError {
    pub fn api(
        operation: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        CloudError::Api {
            operation: operation.into(),
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, CloudError::Transient { .. })
    }

    pub fn is_in_use(&self) -> bool {
        matches!(self, CloudError::InUse { .. })
    }

    /// The provider's error code, when the error came from the provider.
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. }
            | CloudError::InUse { code, .. }
            | CloudError::Transient { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Classify a provider error code.
pub fn classify(operation: &str, code: &str, message: &str) -> CloudError {
    const TRANSIENT: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "PriorRequestNotComplete",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "EC2ThrottledException",
        "Unavailable",
    ];
    const IN_USE: &[&str] = &[
        "DependencyViolation",
        "ResourceInUse",
        "ResourceInUseException",
        "InvalidDBSubnetGroupStateFault",
        "InvalidDBInstanceState",
        "InvalidGroup.InUse",
        "HostedZoneNotEmpty",
        // IAM: a role still in a profile or with a policy IAM has not let go of yet.
        "DeleteConflict",
    ];
    let (operation, code_s, message_s) =
        (operation.to_string(), code.to_string(), message.to_string());
    if TRANSIENT.contains(&code) || code.starts_with("5") {
        CloudError::Transient {
            operation,
            code: code_s,
            message: message_s,
        }
    } else if IN_USE.contains(&code) || message.contains("currently in use") {
        CloudError::InUse {
            operation,
            code: code_s,
            message: message_s,
        }
    } else {
        CloudError::Api {
            operation,
            code: code_s,
            message: message_s,
        }
    }
}

/// Progress of one running step, for long waits ("creating, 3m12s").
pub trait StepProgress: Send + Sync {
    fn status(&self, status: &str);

    /// `true`: the step now only waits for the cloud (polls a resource being made) and
    /// makes no other calls, so another step may run in its place; `false`: it works
    /// again. See [`Waiting`].
    fn waiting(&self, waiting: bool) {
        let _ = waiting;
    }

    /// Something the step leaves behind on purpose and the operator should know of (a
    /// final snapshot, a secret in its recovery window), named so it can be found.
    fn kept(&self, what: &str) {
        let _ = what;
    }
}

/// Marks a step as waiting for the cloud (see [`StepProgress::waiting`]) while it lives.
pub struct Waiting<'a>(&'a dyn StepProgress);

impl<'a> Waiting<'a> {
    pub fn start(progress: &'a dyn StepProgress) -> Self {
        progress.waiting(true);
        Self(progress)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting(false);
    }
}

/// A progress sink that drops everything.
pub struct NoProgress;
impl StepProgress for NoProgress {
    fn status(&self, _status: &str) {}
}

/// Time limits and poll delays of the cloud's waits.
#[derive(Debug, Clone)]
pub struct WaitSettings {
    pub poll: Duration,
    pub instance: Duration,
    pub database: Duration,
    pub load_balancer: Duration,
    pub dns: Duration,
    /// Total time a delete keeps retrying while the cloud says the resource is in use.
    pub dependency: Duration,
}

impl Default for WaitSettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(5),
            instance: Duration::from_secs(10 * 60),
            database: Duration::from_secs(60 * 60),
            load_balancer: Duration::from_secs(15 * 60),
            dns: Duration::from_secs(5 * 60),
            dependency: Duration::from_secs(10 * 60),
        }
    }
}

/// Options that only `destroy` sets.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Skip the final RDS snapshot.
    pub skip_final_snapshot: bool,
    /// Keep the RDS instance's automated backups (restorable, and billed, until their
    /// retention period ends); by default they go with the instance.
    pub keep_automated_backups: bool,
}

/// Everything a cloud operation on one resource needs besides the spec.
pub struct OpContext<'a> {
    pub env: &'a str,
    /// The state this run works for: its lineage and origin go into every tag set.
    pub owner: &'a crate::model::Owner,
    pub id: &'a LogicalId,
    /// Idempotency token for the create call (EC2 `ClientToken`, Route53 `CallerReference`).
    pub token: &'a str,
    /// Cloud ids and attributes of the resources the spec refers to.
    pub resolved: &'a Resolved,
    pub progress: &'a dyn StepProgress,
    pub delete: &'a DeleteOptions,
}

impl<'a> OpContext<'a> {
    /// A context whose progress goes nowhere (planning reads, checks, tests).
    pub fn quiet(
        env: &'a str,
        owner: &'a crate::model::Owner,
        id: &'a LogicalId,
        token: &'a str,
        resolved: &'a Resolved,
        delete: &'a DeleteOptions,
    ) -> Self {
        Self {
            env,
            owner,
            id,
            token,
            resolved,
            progress: &NoProgress,
            delete,
        }
    }
}

/// A resource found in the cloud by its ownership tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub kind: Kind,
    pub id: LogicalId,
    pub cloud_id: String,
    pub attrs: crate::model::Attrs,
    /// Its lineage and origin tags, when it has them.
    pub owner: crate::model::FoundOwner,
}

/// The operations the engine needs from a cloud. Every operation must tolerate being run
/// again after an interruption: `create` is only called after `find` came back empty (or
/// with the same token), `delete` treats "already gone" as success.
#[async_trait]
pub trait Cloud: Send + Sync {
    /// Look for the resource by idempotency token or ownership tags (`provision:env`,
    /// `provision:id`). Used to adopt what an interrupted run created.
    async fn find(&self, ctx: &OpContext<'_>, spec: &Spec) -> Result<Option<Observed>, CloudError>;

    /// Read the resource behind `cloud_id`; `None` when it no longer exists. `drift` lists
    /// how the live resource differs from `spec`.
    async fn read(
        &self,
        ctx: &OpContext<'_>,
        spec: &Spec,
        cloud_id: &str,
    ) -> Result<Option<Observed>, CloudError>;

    /// Create the resource, tagged, and wait until it is usable.
    async fn create(&self, ctx: &OpContext<'_>, spec: &Spec) -> Result<Observed, CloudError>;

    /// Converge an existing resource to `spec` (only fields in `Spec::updatable_fields`).
    async fn update(
        &self,
        ctx: &OpContext<'_>,
        spec: &Spec,
        current: &Observed,
    ) -> Result<Observed, CloudError>;

    /// Delete the resource and wait until it is gone. Already gone is success.
    async fn delete(
        &self,
        ctx: &OpContext<'_>,
        kind: Kind,
        current: &Observed,
    ) -> Result<(), CloudError>;

    /// Tag a resource made before lineage tags existed with `ctx.owner`'s lineage and
    /// origin (a DNS record: its ownership marker), once it is this state's.
    async fn claim(
        &self,
        ctx: &OpContext<'_>,
        kind: Kind,
        current: &Observed,
    ) -> Result<(), CloudError> {
        let _ = (ctx, kind, current);
        Ok(())
    }

    /// Check, without changing anything, what would make a create fail late: a DNS zone
    /// that does not exist, an image that is not there. Called by `plan` for every desired
    /// resource the run may create or change (not for one the state holds unchanged and
    /// the cloud still has), so `apply` stops before its first mutating call.
    async fn preflight(&self, ctx: &OpContext<'_>, spec: &Spec) -> Result<(), CloudError> {
        let _ = (ctx, spec);
        Ok(())
    }

    /// Every resource tagged `provision:env=<env>`.
    async fn list_owned(&self, env: &str) -> Result<Vec<Owned>, CloudError>;

    /// Planning is about to read the resources of `env` and change nothing until
    /// [`end_survey`](Self::end_survey): the cloud may read each kind once, in bulk, and
    /// answer `find`, `read`, `preflight` and `list_owned` from that meanwhile.
    fn begin_survey(&self, env: &str) {
        let _ = env;
    }

    /// The end of what [`begin_survey`](Self::begin_survey) began: from now on every call
    /// reads the cloud again.
    fn end_survey(&self) {}

    /// The current value of a Secrets Manager secret (the RDS master password).
    async fn secret_value(&self, arn: &str) -> Result<String, CloudError>;

    /// The live network of the env, read-only, for `verify`: never the state's idea of it.
    async fn snapshot(
        &self,
        query: &crate::verify::SnapshotQuery,
    ) -> Result<crate::verify::Snapshot, CloudError> {
        let _ = query;
        Err(CloudError::api(
            "Snapshot",
            "Unsupported",
            "this cloud cannot read a network snapshot",
        ))
    }
}

pub type SharedCloud = Arc<dyn Cloud>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Class {
        Transient,
        InUse,
        Api,
    }

    fn class(e: &CloudError) -> Class {
        match e {
            CloudError::Transient { .. } => Class::Transient,
            CloudError::InUse { .. } => Class::InUse,
            CloudError::Api { .. } => Class::Api,
            other => panic!("classify never makes {other:?}"),
        }
    }

    /// Real AWS error codes (EC2, ELBv2, RDS, Route53, IAM, S3, STS) and how the engine must
    /// treat them: throttling is retried, "in use" is waited out, everything else fails
    /// the step at once with its code kept.
    #[test]
    fn classify_real_aws_error_codes() {
        let table: &[(&str, Class)] = &[
            // Throttling.
            ("Throttling", Class::Transient),
            ("ThrottlingException", Class::Transient),
            ("RequestLimitExceeded", Class::Transient),
            ("EC2ThrottledException", Class::Transient),
            ("SlowDown", Class::Transient),
            ("PriorRequestNotComplete", Class::Transient),
            ("ServiceUnavailable", Class::Transient),
            ("InternalError", Class::Transient),
            ("500", Class::Transient),
            // In use.
            ("DependencyViolation", Class::InUse),
            ("ResourceInUse", Class::InUse),
            ("InvalidGroup.InUse", Class::InUse),
            ("ResourceInUseException", Class::InUse),
            ("HostedZoneNotEmpty", Class::InUse),
            ("InvalidDBInstanceState", Class::InUse),
            ("InvalidDBSubnetGroupStateFault", Class::InUse),
            ("DeleteConflict", Class::InUse),
            // Not found.
            ("InvalidVpcID.NotFound", Class::Api),
            ("InvalidGroup.NotFound", Class::Api),
            ("DBInstanceNotFound", Class::Api),
            ("LoadBalancerNotFound", Class::Api),
            ("NoSuchHostedZone", Class::Api),
            ("TargetGroupNotFound", Class::Api),
            ("NoSuchEntity", Class::Api),
            ("InvalidVpcEndpointId.NotFound", Class::Api),
            // Credentials and permissions.
            ("AuthFailure", Class::Api),
            ("UnauthorizedOperation", Class::Api),
            ("AccessDenied", Class::Api),
            ("ExpiredToken", Class::Api),
            ("InvalidClientTokenId", Class::Api),
            // Bad requests.
            ("InvalidParameterValue", Class::Api),
            ("ValidationError", Class::Api),
            ("InvalidParameterCombination", Class::Api),
            ("EntityAlreadyExists", Class::Api),
        ];
        for (code, want) in table {
            let e = classify("Op", code, "some message");
            assert_eq!(&class(&e), want, "{code}");
            assert_eq!(e.is_transient(), *want == Class::Transient, "{code}");
            assert_eq!(e.is_in_use(), *want == Class::InUse, "{code}");
            let text = e.to_string();
            assert!(
                text.contains(code) && text.contains("Op") && text.contains("some message"),
                "{code}: the code, operation and message are kept: {text}"
            );
        }
        // Some services only say it in the message.
        let e = classify(
            "DeleteSecurityGroup",
            "Client.Unknown",
            "resource sg-1 is currently in use",
        );
        assert_eq!(class(&e), Class::InUse);
    }
}
