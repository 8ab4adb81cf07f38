//! Helpers shared by the service adapters: polling waits and "still in use" retries (both
//! bounded by [`WaitSettings`](crate::cloud::WaitSettings), so tests can shrink them), and
//! reading the ownership tags.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::error::error_code;
use super::AwsCloud;
use crate::cloud::{CloudError, StepProgress};
use crate::model::{Kind, TAG_ENV, TAG_ID};

/// Whether the service answered with one of `codes` (typically a "not found" code).
pub fn has_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>, codes: &[&str]) -> bool {
    error_code(err).is_some_and(|c| codes.contains(&c))
}

/// The error for a spec handed to an adapter that does not manage its kind.
pub fn wrong_kind(adapter: &str, kind: Kind) -> CloudError {
    CloudError::api(
        adapter,
        "UnsupportedKind",
        format!("the {adapter} adapter does not manage a {kind}"),
    )
}

/// The error for an update of a resource that no longer exists.
pub fn gone(kind: Kind, cloud_id: &str) -> CloudError {
    CloudError::api(
        "Describe",
        "NotFound",
        format!("{kind} {cloud_id} no longer exists"),
    )
}

/// The error for a response that lacks a field the API always returns.
pub fn missing(operation: &str, what: &str) -> CloudError {
    CloudError::api(
        operation,
        "IncompleteResponse",
        format!("the response has no {what}"),
    )
}

/// One look at a resource during a wait.
pub enum Poll<T> {
    /// The wait is over.
    Done(T),
    /// Not yet; the live status, shown as progress.
    Pending(String),
}

/// The delay before the next look of a wait that has run `elapsed`: soon after the
/// operation started (100 ms), then a tenth of the time waited so far (a resource that is
/// ready is noticed at most ~10% late), never slower than `poll` (`timeouts.poll_seconds`).
/// A quick resource is noticed quickly; a long wait (RDS, 5-15 min) costs one look per
/// `poll`.
pub fn poll_delay(elapsed: Duration, poll: Duration) -> Duration {
    let first = Duration::from_millis(100).min(poll);
    (elapsed / 10).clamp(first, poll.max(first))
}

/// [`poll_delay`] for a wait that starts now.
pub fn poll_delays(poll: Duration) -> impl Iterator<Item = Duration> {
    let start = Instant::now();
    std::iter::repeat_with(move || poll_delay(start.elapsed(), poll))
}

/// Call `check` at [`poll_delays`] until it says [`Poll::Done`] or `limit` has passed,
/// reporting the live status through `progress` (the cloud's own word, e.g. `creating`:
/// the reporter adds the elapsed time itself, and a status that only changes when the
/// cloud's does is sent only then). Transient errors count as
/// "not yet"; other errors end the wait. A timeout names `what` and the last status seen.
pub async fn poll_until<T, F, Fut>(
    cloud: &AwsCloud,
    progress: &dyn StepProgress,
    what: &str,
    limit: Duration,
    mut check: F,
) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, CloudError>>,
{
    let start = Instant::now();
    let mut last = String::from("unknown");
    let mut delays = poll_delays(cloud.waits.poll);
    // Between looks the step only waits: it holds no worker of the engine.
    let _waiting = crate::cloud::Waiting::start(progress);
    loop {
        match check().await {
            Ok(Poll::Done(value)) => return Ok(value),
            Ok(Poll::Pending(status)) => last = status,
            Err(e) if e.is_transient() => last = format!("{last} (retrying: {e})"),
            Err(e) => return Err(e),
        }
        let waited = start.elapsed();
        progress.status(&last);
        if waited >= limit {
            return Err(CloudError::Timeout {
                what: format!("{what} (last status: {last})"),
                waited,
            });
        }
        let delay = delays.next().unwrap_or(cloud.waits.poll);
        tokio::time::sleep(
            delay
                .min(limit.saturating_sub(waited))
                .max(Duration::from_millis(10)),
        )
        .await;
    }
}

/// Run `op` until it stops failing with an "in use" error, for at most
/// `cloud.waits.dependency` (see [`super::retry::retry_in_use`], shared with the EC2
/// adapter). The final error names `what` and repeats what the cloud says still blocks.
pub async fn retry_in_use<T, F, Fut>(
    cloud: &AwsCloud,
    progress: &dyn StepProgress,
    what: &str,
    mut op: F,
) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CloudError>>,
{
    let mut tries = 0u32;
    super::retry::retry_in_use(what, cloud.waits.dependency, cloud.waits.poll, || {
        tries += 1;
        if tries > 1 {
            progress.status(&format!("waiting: {what} is still in use (try {tries})"));
        }
        op()
    })
    .await
}

/// Who a resource's tags say it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Tagged for this environment and logical id.
    Ours,
    /// Tagged for another environment or logical id (`env`, `id` as found, maybe empty).
    Other { env: String, id: String },
    /// No `provision:*` tags at all.
    Untagged,
}

/// Compare `provision:env` / `provision:id` tags with the expected owner.
pub fn ownership<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    env: &str,
    id: &str,
) -> Ownership {
    let (found_env, found_id) = owner_tags(tags);
    match (found_env, found_id) {
        (None, None) => Ownership::Untagged,
        (Some(e), Some(i)) if e == env && i == id => Ownership::Ours,
        (e, i) => Ownership::Other {
            env: e.unwrap_or_default().to_string(),
            id: i.unwrap_or_default().to_string(),
        },
    }
}

/// The values of the `provision:env` and `provision:id` tags, if present.
pub fn owner_tags<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> (Option<&'a str>, Option<&'a str>) {
    let (mut env, mut id) = (None, None);
    for (k, v) in tags {
        if k == TAG_ENV {
            env = Some(v);
        } else if k == TAG_ID {
            id = Some(v);
        }
    }
    (env, id)
}

/// The refusal for a same-named resource that this environment does not own.
pub fn not_ours(kind: Kind, name: &str, env: &str, id: &str, owner: &Ownership) -> CloudError {
    let found = match owner {
        Ownership::Ours => "tagged for this very resource".to_string(),
        Ownership::Other {
            env: other_env,
            id: other_id,
        } => format!("tagged {TAG_ENV}={other_env}, {TAG_ID}={other_id}"),
        Ownership::Untagged => "not tagged by provision".to_string(),
    };
    CloudError::Refused(format!(
        "{kind} `{name}` already exists and is {found}, not {TAG_ENV}={env}, {TAG_ID}={id}; \
         rename or remove it, or use another environment name"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_start_soon_and_back_off_to_the_configured_delay() {
        let ms = |elapsed_ms: u64, poll_ms: u64| {
            poll_delay(
                Duration::from_millis(elapsed_ms),
                Duration::from_millis(poll_ms),
            )
            .as_millis()
        };
        // Soon after the start, then a tenth of the time waited, up to the poll delay.
        assert_eq!(ms(0, 5000), 100);
        assert_eq!(ms(500, 5000), 100);
        assert_eq!(ms(3000, 5000), 300);
        assert_eq!(ms(20_000, 5000), 2000);
        assert_eq!(ms(600_000, 5000), 5000);
        // Never slower than a small configured delay.
        assert_eq!(ms(0, 50), 50);
        assert_eq!(ms(10_000, 50), 50);
        assert_eq!(ms(10_000, 100), 100);
        // A wait of w is noticed at most ~w/10 late (or one poll delay, when capped).
        let mut t = Duration::ZERO;
        let mut looks = 0;
        let ready = Duration::from_secs(90);
        while t < ready {
            t += poll_delay(t, Duration::from_secs(5));
            looks += 1;
        }
        assert!(t - ready <= Duration::from_secs(5), "{t:?}");
        assert!(looks < 70, "{looks} looks for a 90 s wait");
    }

    /// Records the statuses a step reports.
    #[derive(Default)]
    struct Statuses(std::sync::Mutex<Vec<String>>);
    impl StepProgress for Statuses {
        fn status(&self, status: &str) {
            self.0.lock().unwrap().push(status.to_string());
        }
    }

    #[tokio::test]
    async fn a_wait_reports_the_clouds_status_without_the_elapsed_time() {
        let waits = crate::cloud::WaitSettings {
            poll: Duration::from_millis(10),
            ..Default::default()
        };
        let cloud = AwsCloud::new("us-east-1", waits).await.unwrap();
        let progress = Statuses::default();
        let mut looks = 0;
        poll_until(
            &cloud,
            &progress,
            "the test",
            Duration::from_secs(5),
            || {
                looks += 1;
                let answer = if looks < 4 {
                    Poll::Pending("creating".to_string())
                } else {
                    Poll::Done(())
                };
                async move { Ok(answer) }
            },
        )
        .await
        .unwrap();
        let seen = progress.0.lock().unwrap().clone();
        // The reporter adds the time; the status is the cloud's own word, every time the
        // same, so a JSON consumer sees one `step_status` per real change.
        assert_eq!(seen, vec!["creating"; 3], "{seen:?}");
    }

    #[test]
    fn ownership_compares_env_and_id() {
        let tags = [("Name", "lab-nlb"), (TAG_ENV, "lab"), (TAG_ID, "nlb")];
        assert_eq!(ownership(tags, "lab", "nlb"), Ownership::Ours);
        assert_eq!(
            ownership(tags, "prod", "nlb"),
            Ownership::Other {
                env: "lab".into(),
                id: "nlb".into()
            }
        );
        assert_eq!(
            ownership([("Name", "x")], "lab", "nlb"),
            Ownership::Untagged
        );
        assert_eq!(
            ownership([(TAG_ENV, "lab")], "lab", "nlb"),
            Ownership::Other {
                env: "lab".into(),
                id: String::new()
            }
        );
    }
}
