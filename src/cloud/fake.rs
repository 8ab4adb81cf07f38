//! An in-memory cloud for the engine's tests. Unlike the moto emulator it behaves like AWS
//! where that matters for ordering and safety: deleting a resource something still uses
//! fails with `DependencyViolation`, create tokens can be honoured or ignored, and it can be
//! made slow, flaky (transient faults at a rate) or "crash" after the N-th mutating call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::{Rng, SeedableRng};

use super::{Cloud, CloudError, OpContext, Owned};
use crate::model::{Attrs, Kind, LogicalId, Observed, RecordTarget, RefMode, Spec};

#[derive(Debug, Clone)]
pub struct Obj {
    pub kind: Kind,
    pub env: String,
    pub id: LogicalId,
    pub spec: Spec,
    pub attrs: Attrs,
    pub token: String,
    /// Cloud ids this object uses, and whether that use blocks their deletion.
    pub uses: Vec<(String, bool)>,
    /// Delete calls refused so far because AWS had not released it yet.
    pub delete_refusals: u32,
}

/// One call the engine made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: &'static str,
    pub id: String,
    pub mutating: bool,
}

#[derive(Default)]
struct Inner {
    next: u64,
    objects: BTreeMap<String, Obj>,
    calls: Vec<Call>,
    mutations: usize,
    rng: Option<rand::rngs::StdRng>,
    /// Mutating calls inside their latency window right now, and the most ever seen.
    in_flight: usize,
    max_in_flight: usize,
    /// Delete calls refused with `DependencyViolation`.
    in_use_refusals: usize,
}

/// Knobs for the fake's behaviour.
#[derive(Debug, Clone, Default)]
pub struct FakeConfig {
    /// Honour create tokens like EC2 `ClientToken` (moto does not).
    pub honor_tokens: bool,
    /// Fraction of calls that fail with a transient (throttling) error.
    pub transient_rate: f64,
    pub seed: u64,
    /// After this many mutating calls went through, every further call hangs: the
    /// process "died" right after the cloud accepted the call.
    pub crash_after_mutations: Option<usize>,
    /// Latency of every mutating call.
    pub delay: Duration,
    /// The first this-many delete calls of every resource are refused with
    /// `DependencyViolation` even when nothing uses it any more, as AWS does while ENIs
    /// drain. Deleting something a live object still uses is refused for as long as that
    /// user exists. Either way the refusal reaches the caller: retrying is the engine's job.
    pub in_use_retries_needed: u32,
    /// Fraction of mutating calls that go through but whose reply is lost: the caller
    /// sees a transient error (a timeout) although the change happened.
    pub lost_reply_rate: f64,
    /// Logical ids whose create fails at once with a permanent API error.
    pub fail_ids: Vec<String>,
}

#[derive(Clone)]
pub struct FakeCloud {
    inner: Arc<Mutex<Inner>>,
    pub config: Arc<Mutex<FakeConfig>>,
    crashed: Arc<AtomicBool>,
    crash_notify: Arc<tokio::sync::Notify>,
}

impl Default for FakeCloud {
    fn default() -> Self {
        Self::new(FakeConfig::default())
    }
}

impl FakeCloud {
    pub fn new(config: FakeConfig) -> Self {
        let inner = Inner {
            rng: Some(rand::rngs::StdRng::seed_from_u64(config.seed)),
            ..Default::default()
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
            config: Arc::new(Mutex::new(config)),
            crashed: Arc::new(AtomicBool::new(false)),
            crash_notify: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn set_config(&self, f: impl FnOnce(&mut FakeConfig)) {
        f(&mut self.config.lock().unwrap());
    }

    /// Bring a "crashed" cloud back for the next run (the process restarted).
    pub fn restart(&self) {
        self.crashed.store(false, Ordering::SeqCst);
        let mut c = self.config.lock().unwrap();
        c.crash_after_mutations = None;
        self.inner.lock().unwrap().mutations = 0;
    }

    pub fn has_crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Resolves when the fake "crashes".
    pub async fn crashed(&self) {
        loop {
            let notified = self.crash_notify.notified();
            if self.has_crashed() {
                return;
            }
            notified.await;
        }
    }

    pub fn objects(&self) -> Vec<Obj> {
        self.inner
            .lock()
            .unwrap()
            .objects
            .values()
            .cloned()
            .collect()
    }

    pub fn count(&self, env: &str, id: &str) -> usize {
        self.inner
            .lock()
            .unwrap()
            .objects
            .values()
            .filter(|o| o.env == env && o.id.as_str() == id)
            .count()
    }

    /// The live objects of `env` with their cloud ids.
    pub fn live(&self, env: &str) -> Vec<(String, Obj)> {
        self.inner
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|(_, o)| o.env == env)
            .map(|(c, o)| (c.clone(), o.clone()))
            .collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn mutating_calls(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.mutating).collect()
    }

    /// The most mutating calls that were ever in flight at once (needs a `delay`).
    pub fn max_in_flight(&self) -> usize {
        self.inner.lock().unwrap().max_in_flight
    }

    /// Delete calls refused because the resource was (still) in use.
    pub fn in_use_refusals(&self) -> usize {
        self.inner.lock().unwrap().in_use_refusals
    }

    pub fn clear_calls(&self) {
        self.inner.lock().unwrap().calls.clear();
    }

    /// Change a live object behind the tool's back (drift).
    pub fn tamper(&self, env: &str, id: &str, f: impl FnOnce(&mut Obj)) {
        let mut inner = self.inner.lock().unwrap();
        let obj = inner
            .objects
            .values_mut()
            .find(|o| o.env == env && o.id.as_str() == id)
            .expect("object to tamper with");
        f(obj);
    }

    /// Put an object into the cloud behind the tool's back (a stray resource, or something
    /// of another environment that uses one of ours); returns its cloud id.
    pub fn inject(&self, env: &str, id: &str, spec: Spec, uses: Vec<(String, bool)>) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.next += 1;
        let n = inner.next;
        let cloud_id = format!("{}-{n:06}", Self::prefix(spec.kind()));
        inner.objects.insert(
            cloud_id.clone(),
            Obj {
                kind: spec.kind(),
                env: env.to_string(),
                id: LogicalId::new(id),
                spec,
                attrs: Attrs::None,
                token: String::new(),
                uses,
                delete_refusals: 0,
            },
        );
        cloud_id
    }

    /// Delete a live object behind the tool's back.
    pub fn remove(&self, env: &str, id: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .objects
            .retain(|_, o| !(o.env == env && o.id.as_str() == id));
    }

    async fn enter(&self, op: &'static str, id: &str, mutating: bool) -> Result<(), CloudError> {
        if self.has_crashed() {
            std::future::pending::<()>().await;
        }
        let (rate, delay) = {
            let c = self.config.lock().unwrap();
            (c.transient_rate, c.delay)
        };
        if mutating && !delay.is_zero() {
            let _gauge = InFlight::enter(&self.inner);
            tokio::time::sleep(delay).await;
        }
        let mut inner = self.inner.lock().unwrap();
        inner.calls.push(Call {
            op,
            id: id.to_string(),
            mutating,
        });
        if rate > 0.0 {
            let roll: f64 = inner.rng.as_mut().expect("rng").random();
            if roll < rate {
                return Err(CloudError::Transient {
                    operation: op.to_string(),
                    code: "Throttling".into(),
                    message: "Rate exceeded (injected)".into(),
                });
            }
        }
        Ok(())
    }

    /// Count a mutation that went through; hang forever if this was the crash point.
    async fn after_mutation(&self) {
        let limit = self.config.lock().unwrap().crash_after_mutations;
        let n = {
            let mut inner = self.inner.lock().unwrap();
            inner.mutations += 1;
            inner.mutations
        };
        if limit.is_some_and(|l| n >= l) {
            self.crashed.store(true, Ordering::SeqCst);
            self.crash_notify.notify_waiters();
            std::future::pending::<()>().await;
        }
    }

    /// After a mutation went through: maybe pretend its reply was lost.
    fn reply(&self, op: &str) -> Result<(), CloudError> {
        let rate = self.config.lock().unwrap().lost_reply_rate;
        if rate > 0.0 {
            let roll: f64 = self
                .inner
                .lock()
                .unwrap()
                .rng
                .as_mut()
                .expect("rng")
                .random();
            if roll < rate {
                return Err(CloudError::Transient {
                    operation: op.to_string(),
                    code: "RequestTimeout".into(),
                    message: "the reply was lost (injected); the call went through".into(),
                });
            }
        }
        Ok(())
    }

    fn attrs_for(n: u64, spec: &Spec, ctx: &OpContext<'_>) -> Attrs {
        match spec {
            Spec::Subnet(s) => Attrs::Subnet {
                availability_zone: format!("us-east-1{}", (b'a' + s.zone_index as u8) as char),
            },
            Spec::Instance(s) => Attrs::Instance {
                private_ip: format!("10.42.{}.{}", n / 250, n % 250 + 4),
                public_ip: s.public_ip.then(|| format!("203.0.113.{}", n % 250)),
                availability_zone: "us-east-1a".into(),
            },
            Spec::Database(_) => Attrs::Database {
                address: format!("{}-datastore.fake.rds.local", ctx.env),
                port: 3306,
                secret_arn: format!(
                    "arn:aws:secretsmanager:us-east-1:000000000000:secret:rds!db-{n}"
                ),
                status: "available".into(),
            },
            Spec::LoadBalancer(_) => Attrs::LoadBalancer {
                dns_name: format!("{}-nlb-{n}.elb.fake", ctx.env),
                canonical_zone_id: "ZFAKELB".into(),
            },
            Spec::HostedZone(z) => Attrs::HostedZone {
                name: z.name.clone(),
            },
            Spec::DnsRecord(r) => Attrs::DnsRecord {
                zone_id: "ZFAKE".into(),
                fqdn: r.name.clone(),
                record_type: match r.target {
                    RecordTarget::CnameLoadBalancer(_) => "CNAME".into(),
                    _ => "A".into(),
                },
            },
            Spec::KeyPair(_) => Attrs::KeyPair {
                name: format!("{}-{}", ctx.env, ctx.id),
            },
            _ => Attrs::None,
        }
    }

    fn prefix(kind: Kind) -> &'static str {
        match kind {
            Kind::Vpc => "vpc",
            Kind::InternetGateway => "igw",
            Kind::Subnet => "subnet",
            Kind::RouteTable => "rtb",
            Kind::SecurityGroup => "sg",
            Kind::KeyPair => "key",
            Kind::Instance => "i",
            Kind::DbSubnetGroup => "dbsg",
            Kind::Database => "db",
            Kind::LoadBalancer => "lb",
            Kind::TargetGroup => "tg",
            Kind::Listener => "lst",
            Kind::HostedZone => "Z",
            Kind::DnsRecord => "rec",
        }
    }

    fn uses(spec: &Spec, ctx: &OpContext<'_>) -> Result<Vec<(String, bool)>, CloudError> {
        let mut out = Vec::new();
        for (r, mode) in spec.refs() {
            let id = ctx.resolved.cloud_id(&r)?.to_string();
            let blocking = match spec {
                // AWS deregisters terminated targets; Route53 does not pin its targets.
                Spec::TargetGroup(_) | Spec::DnsRecord(_) => mode == RefMode::Parent,
                _ => true,
            };
            out.push((id, blocking));
        }
        Ok(out)
    }
}

/// Counts a mutating call as in flight until dropped (also when the caller is dropped).
struct InFlight<'a>(&'a Mutex<Inner>);

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Mutex<Inner>) -> Self {
        let mut i = inner.lock().unwrap();
        i.in_flight += 1;
        i.max_in_flight = i.max_in_flight.max(i.in_flight);
        Self(inner)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

#[async_trait]
impl Cloud for FakeCloud {
    async fn find(&self, ctx: &OpContext<'_>, spec: &Spec) -> Result<Option<Observed>, CloudError> {
        self.enter("find", ctx.id.as_str(), false).await?;
        let inner = self.inner.lock().unwrap();
        let honor = self.config.lock().unwrap().honor_tokens;
        let found: Vec<_> = inner
            .objects
            .iter()
            .filter(|(_, o)| {
                o.kind == spec.kind()
                    && ((o.env == ctx.env && &o.id == ctx.id)
                        || (honor && !ctx.token.is_empty() && o.token == ctx.token))
            })
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [(cid, o)] => Ok(Some(Observed::new((*cid).clone(), o.attrs.clone()))),
            many => Err(CloudError::api(
                "find",
                "Ambiguous",
                format!(
                    "{} resources tagged {}: {}",
                    many.len(),
                    ctx.id,
                    many.iter()
                        .map(|(c, _)| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    async fn read(
        &self,
        ctx: &OpContext<'_>,
        spec: &Spec,
        cloud_id: &str,
    ) -> Result<Option<Observed>, CloudError> {
        self.enter("read", cloud_id, false).await?;
        let inner = self.inner.lock().unwrap();
        Ok(inner.objects.get(cloud_id).map(|o| {
            let (_, drift) = crate::engine::plan::spec_changes(&o.spec, spec);
            let _ = ctx;
            Observed {
                cloud_id: cloud_id.to_string(),
                attrs: o.attrs.clone(),
                drift,
            }
        }))
    }

    async fn create(&self, ctx: &OpContext<'_>, spec: &Spec) -> Result<Observed, CloudError> {
        if self
            .config
            .lock()
            .unwrap()
            .fail_ids
            .iter()
            .any(|f| f == ctx.id.as_str())
        {
            // Refused at once (no latency), so steps started with it are still running.
            self.inner.lock().unwrap().calls.push(Call {
                op: "create",
                id: ctx.id.to_string(),
                mutating: true,
            });
            return Err(CloudError::api(
                "create",
                "InvalidParameterValue",
                format!("{} was refused (injected)", ctx.id),
            ));
        }
        self.enter("create", ctx.id.as_str(), true).await?;
        let uses = Self::uses(spec, ctx)?;
        let obs = {
            let mut inner = self.inner.lock().unwrap();
            let honor = self.config.lock().unwrap().honor_tokens;
            if honor && !ctx.token.is_empty() {
                if let Some((cid, o)) = inner.objects.iter().find(|(_, o)| o.token == ctx.token) {
                    return Ok(Observed::new(cid.clone(), o.attrs.clone()));
                }
            }
            inner.next += 1;
            let n = inner.next;
            let cloud_id = format!("{}-{n:06}", Self::prefix(spec.kind()));
            let attrs = Self::attrs_for(n, spec, ctx);
            inner.objects.insert(
                cloud_id.clone(),
                Obj {
                    kind: spec.kind(),
                    env: ctx.env.to_string(),
                    id: ctx.id.clone(),
                    spec: spec.clone(),
                    attrs: attrs.clone(),
                    token: ctx.token.to_string(),
                    uses,
                    delete_refusals: 0,
                },
            );
            Observed::new(cloud_id, attrs)
        };
        self.after_mutation().await;
        self.reply("mutation")?;
        Ok(obs)
    }

    async fn update(
        &self,
        ctx: &OpContext<'_>,
        spec: &Spec,
        current: &Observed,
    ) -> Result<Observed, CloudError> {
        self.enter("update", &current.cloud_id, true).await?;
        let uses = Self::uses(spec, ctx)?;
        let obs = {
            let mut inner = self.inner.lock().unwrap();
            let Some(o) = inner.objects.get_mut(&current.cloud_id) else {
                return Err(CloudError::api(
                    "update",
                    "NotFound",
                    format!("{} does not exist", current.cloud_id),
                ));
            };
            o.spec = spec.clone();
            o.uses = uses;
            Observed::new(current.cloud_id.clone(), o.attrs.clone())
        };
        self.after_mutation().await;
        self.reply("mutation")?;
        Ok(obs)
    }

    async fn delete(
        &self,
        ctx: &OpContext<'_>,
        _kind: Kind,
        current: &Observed,
    ) -> Result<(), CloudError> {
        let needed = self.config.lock().unwrap().in_use_retries_needed;
        self.enter("delete", &current.cloud_id, true).await?;
        {
            let mut inner = self.inner.lock().unwrap();
            if !inner.objects.contains_key(&current.cloud_id) {
                return Ok(());
            }
            let blocked: Vec<String> = inner
                .objects
                .iter()
                .filter(|(_, o)| {
                    o.uses
                        .iter()
                        .any(|(u, blocking)| *blocking && u == &current.cloud_id)
                })
                .map(|(c, o)| format!("{} ({})", o.id, c))
                .collect();
            if !blocked.is_empty() {
                inner.in_use_refusals += 1;
                return Err(CloudError::InUse {
                    operation: "delete".into(),
                    code: "DependencyViolation".into(),
                    message: format!(
                        "{} ({}) is still used by {}",
                        ctx.id,
                        current.cloud_id,
                        blocked.join(", ")
                    ),
                });
            }
            let obj = inner.objects.get_mut(&current.cloud_id).expect("checked");
            if obj.delete_refusals < needed {
                // AWS has not released the resource yet (ENIs draining).
                obj.delete_refusals += 1;
                inner.in_use_refusals += 1;
                return Err(CloudError::InUse {
                    operation: "delete".into(),
                    code: "DependencyViolation".into(),
                    message: format!(
                        "{} ({}) has a dependent object (network interfaces still draining)",
                        ctx.id, current.cloud_id
                    ),
                });
            }
            inner.objects.remove(&current.cloud_id);
        }
        self.after_mutation().await;
        self.reply("delete")
    }

    async fn list_owned(&self, env: &str) -> Result<Vec<Owned>, CloudError> {
        self.enter("list_owned", env, false).await?;
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .objects
            .iter()
            .filter(|(_, o)| o.env == env)
            .map(|(cid, o)| Owned {
                kind: o.kind,
                id: o.id.clone(),
                cloud_id: cid.clone(),
                attrs: o.attrs.clone(),
            })
            .collect())
    }

    async fn secret_value(&self, arn: &str) -> Result<String, CloudError> {
        self.enter("secret_value", arn, false).await?;
        Ok(format!(
            "fake-password-for-{}",
            arn.rsplit(':').next().unwrap_or("x")
        ))
    }
}
