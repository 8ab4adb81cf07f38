//! Retrying one cloud call while the cloud says "not yet": a resource still in use by
//! something AWS has not released (deleting a security group right after its instance was
//! terminated), or a resource created a moment ago that another API does not see yet.
//!
//! The SDK already retries throttling and 5xx; these helpers only cover the errors that
//! mean "wait for the cloud to catch up", with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::cloud::CloudError;

/// Longest pause between two tries, whatever the poll interval.
const MAX_DELAY: Duration = Duration::from_secs(20);

/// Why [`retry_while`] gave up.
#[derive(Debug)]
pub(crate) enum RetryError {
    /// The call failed with an error not worth retrying.
    Failed(CloudError),
    /// The call kept failing with a retryable error until the deadline.
    Exhausted { last: CloudError, waited: Duration },
}

impl RetryError {
    /// The underlying cloud error, dropping the distinction.
    pub(crate) fn into_inner(self) -> CloudError {
        match self {
            RetryError::Failed(e) | RetryError::Exhausted { last: e, .. } => e,
        }
    }
}

/// Run `op` until it succeeds, fails with an error `retryable` rejects, or `limit` has
/// elapsed. Pauses start at `poll` and double up to 20 s; the last try is at the deadline.
pub(crate) async fn retry_while<T, F, Fut, P>(
    limit: Duration,
    poll: Duration,
    retryable: P,
    mut op: F,
) -> Result<T, RetryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CloudError>>,
    P: Fn(&CloudError) -> bool,
{
    let start = Instant::now();
    let mut delay = poll.max(Duration::from_millis(10));
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if !retryable(&e) => return Err(RetryError::Failed(e)),
            Err(e) => {
                let waited = start.elapsed();
                if waited >= limit {
                    return Err(RetryError::Exhausted { last: e, waited });
                }
                // The last try happens at the deadline, not a pause before it.
                tokio::time::sleep(delay.min(limit - waited)).await;
                delay = (delay * 2).min(MAX_DELAY.max(poll));
            }
        }
    }
}

/// Run a delete-like call while the cloud answers "in use" (`DependencyViolation`,
/// `ResourceInUse`, ...), until `limit`. When the time is up the error names `what` and
/// what the cloud said blocks it, e.g. "security group sg-1 still in use
/// (DependencyViolation: ...)".
pub(crate) async fn retry_in_use<T, F, Fut>(
    what: &str,
    limit: Duration,
    poll: Duration,
    op: F,
) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CloudError>>,
{
    retry_while(limit, poll, CloudError::is_in_use, op)
        .await
        .map_err(|e| match e {
            RetryError::Failed(e) => e,
            RetryError::Exhausted { last, waited } => in_use_timeout(what, &last, waited),
        })
}

fn in_use_timeout(what: &str, last: &CloudError, waited: Duration) -> CloudError {
    let cause = match last {
        CloudError::InUse { code, message, .. } => format!("{code}: {message}"),
        other => other.to_string(),
    };
    CloudError::Timeout {
        what: format!("{what} to be released; still in use ({cause})"),
        waited,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn in_use() -> CloudError {
        CloudError::InUse {
            operation: "DeleteSecurityGroup".into(),
            code: "DependencyViolation".into(),
            message: "resource sg-1 has a dependent object".into(),
        }
    }

    #[tokio::test]
    async fn retries_until_success() {
        let calls = Cell::new(0);
        let out = retry_in_use(
            "security group sg-1",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 3 {
                        Err(in_use())
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(out, 3);
    }

    #[tokio::test]
    async fn other_errors_fail_at_once() {
        let calls = Cell::new(0);
        let err = retry_in_use(
            "vpc vpc-1",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                calls.set(calls.get() + 1);
                async { Err::<(), _>(CloudError::api("DeleteVpc", "UnauthorizedOperation", "no")) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(calls.get(), 1);
        assert!(matches!(err, CloudError::Api { .. }));
    }

    #[tokio::test]
    async fn gives_up_naming_the_blocker() {
        let err = retry_in_use(
            "security group sg-1",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || async { Err::<(), _>(in_use()) },
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CloudError::Timeout { .. }));
        assert!(text.contains("security group sg-1"), "{text}");
        assert!(
            text.contains("DependencyViolation: resource sg-1 has a dependent object"),
            "{text}"
        );
    }
}
