//! Waiting for instances together: every instance being waited for (launching, stopping,
//! terminating) is looked at by one `DescribeInstances` per round, whatever the number of
//! nodes. A round comes soon after the newest wait began (100 ms) and then at a tenth of
//! its age (see [`poll_delay`]), never slower than `timeouts.poll_seconds`: a node that is
//! up is noticed at once, and fifty booting nodes cost one call per round, not fifty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, Instance};
use tokio::sync::{watch, Notify};

use super::super::common::poll_delay;
use super::instance::describe_instances_by;
use crate::cloud::CloudError;

/// What the last round saw: each watched id's instance (`None`: not listed), or the
/// round's error.
#[derive(Clone, Default)]
pub struct Round {
    pub seen: HashMap<String, Option<Instance>>,
    pub error: Option<Arc<CloudError>>,
}

#[derive(Default)]
struct Watched {
    /// id -> (when its wait began, how many waits)
    ids: HashMap<String, (Instant, usize)>,
    running: bool,
}

/// The shared poller of an [`AwsCloud`](super::AwsCloud).
pub struct InstanceWatch {
    watched: Mutex<Watched>,
    added: Notify,
    rounds: watch::Sender<Arc<Round>>,
    /// Calls made (one per round), for tests.
    pub calls: std::sync::atomic::AtomicU64,
}

impl Default for InstanceWatch {
    fn default() -> Self {
        Self {
            watched: Mutex::default(),
            added: Notify::new(),
            rounds: watch::channel(Arc::new(Round::default())).0,
            calls: Default::default(),
        }
    }
}

/// One wait's registration; the id is no longer looked at once every wait on it ended.
pub struct Ticket {
    watch: Arc<InstanceWatch>,
    id: String,
    pub rounds: watch::Receiver<Arc<Round>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut w = self.watch.watched.lock().unwrap();
        if let Some((_, n)) = w.ids.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                w.ids.remove(&self.id);
            }
        }
    }
}

impl InstanceWatch {
    /// Start watching `id`; the rounds that follow (not the ones before) report it.
    pub fn watch(self: &Arc<Self>, ec2: &aws_sdk_ec2::Client, poll: Duration, id: &str) -> Ticket {
        let mut rounds = self.rounds.subscribe();
        rounds.mark_unchanged();
        let start = {
            let mut w = self.watched.lock().unwrap();
            w.ids
                .entry(id.to_string())
                .and_modify(|(since, n)| {
                    *since = Instant::now();
                    *n += 1
                })
                .or_insert((Instant::now(), 1));
            !std::mem::replace(&mut w.running, true)
        };
        if start {
            let (me, ec2) = (self.clone(), ec2.clone());
            tokio::spawn(async move { me.run(ec2, poll).await });
        } else {
            self.added.notify_one();
        }
        Ticket {
            watch: self.clone(),
            id: id.to_string(),
            rounds,
        }
    }

    /// Rounds until nothing is watched any more.
    async fn run(self: Arc<Self>, ec2: aws_sdk_ec2::Client, poll: Duration) {
        let mut last_round = Instant::now();
        loop {
            // Wait for the next round: soon after the newest wait began, then less often.
            loop {
                let newest = {
                    let mut w = self.watched.lock().unwrap();
                    match w.ids.values().map(|(since, _)| since.elapsed()).min() {
                        Some(age) => age,
                        None => {
                            w.running = false;
                            return;
                        }
                    }
                };
                let due = last_round + poll_delay(newest, poll);
                let now = Instant::now();
                if due <= now {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(due - now) => {}
                    // A new wait: its first look may be due sooner.
                    _ = self.added.notified() => {}
                }
            }
            let ids: Vec<String> = self.watched.lock().unwrap().ids.keys().cloned().collect();
            last_round = Instant::now();
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // A filter, not an id list: an id EC2 does not show yet (just launched) or any
            // more is simply absent, instead of failing the whole call.
            let mut seen: HashMap<String, Option<Instance>> =
                ids.iter().map(|i| (i.clone(), None)).collect();
            let mut error = None;
            for chunk in ids.chunks(199) {
                let filter = Filter::builder()
                    .name("instance-id")
                    .set_values(Some(chunk.to_vec()))
                    .build();
                match describe_instances_by(&ec2, None, Some(vec![filter])).await {
                    Ok(found) => {
                        for i in found {
                            if let Some(id) = i.instance_id() {
                                seen.insert(id.to_string(), Some(i.clone()));
                            }
                        }
                    }
                    Err(e) => error = Some(Arc::new(e)),
                }
            }
            let _ = self.rounds.send_replace(Arc::new(Round { seen, error }));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_ec2::types::InstanceStateName;

    use super::super::instance::wait_instance;
    use crate::cloud::aws::rds::testing::{Reply, Script};
    use crate::cloud::{DeleteOptions, NoProgress, OpContext};
    use crate::model::{LogicalId, Resolved};

    /// A DescribeInstances answer: the instances the filter names, `pending` for their
    /// first three looks each, then `running`.
    fn describe(
        call: &crate::cloud::aws::rds::testing::Call,
        earlier: &[crate::cloud::aws::rds::testing::Call],
    ) -> Reply {
        let ids: Vec<String> = call
            .body
            .split('&')
            .filter(|p| p.starts_with("Filter.1.Value."))
            .filter_map(|p| p.split('=').nth(1).map(str::to_string))
            .collect();
        let items: String = ids
            .iter()
            .map(|id| {
                let looks = earlier
                    .iter()
                    .filter(|c| c.body.contains(&format!("={id}")))
                    .count();
                let (code, name) = if looks < 3 {
                    (0, "pending")
                } else {
                    (16, "running")
                };
                format!(
                    "<item><instanceId>{id}</instanceId><instanceState><code>{code}</code>\
                     <name>{name}</name></instanceState></item>"
                )
            })
            .collect();
        Reply(
            200,
            "text/xml",
            format!(
                "<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
                 <requestId>r-1</requestId><reservationSet><item><reservationId>r-1</reservationId>\
                 <instancesSet>{items}</instancesSet></item></reservationSet>\
                 </DescribeInstancesResponse>"
            ),
        )
    }

    #[tokio::test]
    async fn every_instance_waited_for_is_looked_at_in_one_call_per_round() {
        let script = Script::new(describe);
        let cloud = script.cloud(Duration::from_secs(5));
        let resolved = Resolved::default();
        let delete = DeleteOptions::default();
        let ids: Vec<String> = (1..=6).map(|i| format!("i-{i:04}")).collect();
        let logical: Vec<LogicalId> = (1..=6)
            .map(|i| LogicalId::new(format!("node-{i}")))
            .collect();
        let waits = ids.iter().zip(&logical).map(|(id, l)| {
            let (cloud, resolved, delete) = (&cloud, &resolved, &delete);
            async move {
                let ctx = OpContext {
                    env: "lab",
                    owner: &crate::model::Owner::default(),
                    id: l,
                    token: "",
                    resolved,
                    progress: &NoProgress,
                    delete,
                };
                wait_instance(cloud, &ctx, id, InstanceStateName::Running).await
            }
        });
        for up in futures::future::join_all(waits).await {
            let up = up.expect("running").expect("listed");
            assert_eq!(
                up.state().and_then(|s| s.name()),
                Some(&InstanceStateName::Running)
            );
        }
        // Each instance needed four looks; one call per round looked at all six.
        let calls = script.calls();
        assert!(calls.iter().all(|c| c.action == "DescribeInstances"));
        assert!(calls.len() < 8, "{} calls for 6 instances", calls.len());
        assert!(
            calls
                .iter()
                .any(|c| ids.iter().all(|id| c.body.contains(&format!("={id}")))),
            "a round names every instance waited for"
        );
    }
}
