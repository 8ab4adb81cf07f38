//! The AWS implementation of [`Cloud`]: one module per service, each holding the SDK
//! calls for its resource kinds. This file only builds the clients once and dispatches by
//! [`Kind`]. Scheduling, retries of whole steps and state live in the engine, not here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

use super::{Cloud, CloudError, OpContext, Owned, WaitSettings};
use crate::model::{Kind, Observed, Spec};

mod api_log;
mod claim;
mod common;
mod ec2;
mod elb;
mod error;
mod iam;
mod memo;
mod rds;
pub mod reach;
mod retry;
mod route53;
mod secretsmanager;
mod snapshot;

pub use api_log::ApiLog;
pub use error::{error_code, sdk_error, NO_CREDENTIALS};

/// The SDK config every client of a run is built from: the standard AWS chain (profile,
/// env credentials, `AWS_ENDPOINT_URL*`) with `region` winning, patient retries of
/// throttling and transient errors, and bounded timeouts.
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    let retry = RetryConfig::standard()
        .with_max_attempts(8)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(20));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(60))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .retry_config(retry)
        .timeout_config(timeouts)
        .load()
        .await
}

/// SDK clients built once from the standard AWS chain (profile, env credentials,
/// `AWS_ENDPOINT_URL*`), with the config's region winning.
#[derive(Clone)]
pub struct AwsCloud {
    pub ec2: aws_sdk_ec2::Client,
    pub rds: aws_sdk_rds::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub route53: aws_sdk_route53::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    /// IAM is global: with `AWS_ENDPOINT_URL` set it goes there like every service.
    pub iam: aws_sdk_iam::Client,
    pub region: String,
    pub waits: WaitSettings,
    /// What does not change during the run (images, zones, instance types), asked once.
    memo: Arc<memo::Memo>,
    /// The lists of the environment `plan` is reading (see [`memo::Survey`]).
    survey: Arc<Mutex<Option<Arc<memo::Survey>>>>,
    /// One poller for every instance being waited for.
    instances: Arc<ec2::watch::InstanceWatch>,
    /// Instance types asked in batches.
    batches: Arc<ec2::Batches>,
    /// Where EC2 calls go (see [`AwsCloud::check_reachable`]).
    ec2_endpoint: reach::Target,
}

impl AwsCloud {
    /// Build the clients. Credentials are not fetched here but by the first call (the SDK
    /// then keeps them): a missing profile or key fails that call, with a hint.
    pub async fn new(region: &str, waits: WaitSettings) -> Result<Self, CloudError> {
        let shared = sdk_config(region).await;
        Ok(Self::from_sdk_config(&shared, region, waits))
    }

    /// The clients from a config built elsewhere (the contract tests point one at the
    /// emulator without touching the process environment).
    pub fn from_sdk_config(
        shared: &aws_config::SdkConfig,
        region: &str,
        waits: WaitSettings,
    ) -> Self {
        let ec2_endpoint =
            reach::Target::resolve("EC2", "ec2", region, shared.endpoint_url(), &|name| {
                std::env::var(name).ok()
            });
        Self {
            // Every client logs its calls at -v (see `api_log`).
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            rds: aws_sdk_rds::Client::from_conf(
                aws_sdk_rds::config::Builder::from(shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(
                aws_sdk_elasticloadbalancingv2::config::Builder::from(shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            route53: aws_sdk_route53::Client::from_conf(
                aws_sdk_route53::config::Builder::from(shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            secrets: aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            region: region.to_string(),
            waits,
            memo: Default::default(),
            survey: Default::default(),
            instances: Default::default(),
            batches: Default::default(),
            ec2_endpoint,
        }
    }

    /// One TCP connection to the EC2 endpoint (or the proxy carrying the calls): an
    /// unreachable endpoint fails within [`reach::PROBE_TIMEOUT`], named, before the
    /// first call instead of after the SDK's retries.
    pub async fn check_reachable(&self) -> Result<(), CloudError> {
        self.ec2_endpoint
            .probe(reach::PROBE_TIMEOUT)
            .await
            .map_err(CloudError::Refused)
    }

    /// The survey of `env` if `plan` is reading it now.
    fn survey(&self, env: &str) -> Option<Arc<memo::Survey>> {
        memo::survey_of(&self.survey, env)
    }

    /// The survey running now, whatever its env: for lists that are not per env.
    fn current_survey(&self) -> Option<Arc<memo::Survey>> {
        self.survey.lock().unwrap().clone()
    }
}

#[async_trait]
impl Cloud for AwsCloud {
    async fn find(&self, ctx: &OpContext<'_>, spec: &Spec) -> Result<Option<Observed>, CloudError> {
        match spec.kind() {
            Kind::Database | Kind::DbSubnetGroup => rds::find(self, ctx, spec).await,
            Kind::LoadBalancer | Kind::TargetGroup | Kind::Listener => {
                elb::find(self, ctx, spec).await
            }
            Kind::HostedZone | Kind::DnsRecord => route53::find(self, ctx, spec).await,
            Kind::Secret => secretsmanager::find(self, ctx, spec).await,
            Kind::IamRole | Kind::InstanceProfile => iam::find(self, ctx, spec).await,
            _ => ec2::find(self, ctx, spec).await,
        }
    }

    async fn read(
        &self,
        ctx: &OpContext<'_>,
        spec: &Spec,
        cloud_id: &str,
    ) -> Result<Option<Observed>, CloudError> {
        match spec.kind() {
            Kind::Database | Kind::DbSubnetGroup => rds::read(self, ctx, spec, cloud_id).await,
            Kind::LoadBalancer | Kind::TargetGroup | Kind::Listener => {
                elb::read(self, ctx, spec, cloud_id).await
            }
            Kind::HostedZone | Kind::DnsRecord => route53::read(self, ctx, spec, cloud_id).await,
            Kind::Secret => secretsmanager::read(self, ctx, cloud_id).await,
            Kind::IamRole | Kind::InstanceProfile => iam::read(self, ctx, spec, cloud_id).await,
            _ => ec2::read(self, ctx, spec, cloud_id).await,
        }
    }

    async fn create(&self, ctx: &OpContext<'_>, spec: &Spec) -> Result<Observed, CloudError> {
        match spec.kind() {
            Kind::Database | Kind::DbSubnetGroup => rds::create(self, ctx, spec).await,
            Kind::LoadBalancer | Kind::TargetGroup | Kind::Listener => {
                elb::create(self, ctx, spec).await
            }
            Kind::HostedZone | Kind::DnsRecord => route53::create(self, ctx, spec).await,
            Kind::Secret => secretsmanager::create(self, ctx, spec).await,
            Kind::IamRole | Kind::InstanceProfile => iam::create(self, ctx, spec).await,
            _ => ec2::create(self, ctx, spec).await,
        }
    }

    async fn update(
        &self,
        ctx: &OpContext<'_>,
        spec: &Spec,
        current: &Observed,
    ) -> Result<Observed, CloudError> {
        match spec.kind() {
            Kind::Database | Kind::DbSubnetGroup => rds::update(self, ctx, spec, current).await,
            Kind::LoadBalancer | Kind::TargetGroup | Kind::Listener => {
                elb::update(self, ctx, spec, current).await
            }
            Kind::HostedZone | Kind::DnsRecord => route53::update(self, ctx, spec, current).await,
            Kind::Secret => secretsmanager::update(self, spec, current).await,
            Kind::IamRole | Kind::InstanceProfile => iam::update(self, ctx, spec, current).await,
            _ => ec2::update(self, ctx, spec, current).await,
        }
    }

    async fn delete(
        &self,
        ctx: &OpContext<'_>,
        kind: Kind,
        current: &Observed,
    ) -> Result<(), CloudError> {
        match kind {
            Kind::Database | Kind::DbSubnetGroup => rds::delete(self, ctx, kind, current).await,
            Kind::LoadBalancer | Kind::TargetGroup | Kind::Listener => {
                elb::delete(self, ctx, kind, current).await
            }
            Kind::HostedZone | Kind::DnsRecord => route53::delete(self, ctx, kind, current).await,
            Kind::Secret => secretsmanager::delete(self, ctx, current).await,
            Kind::IamRole | Kind::InstanceProfile => iam::delete(self, kind, current).await,
            _ => ec2::delete(self, ctx, kind, current).await,
        }
    }

    async fn claim(
        &self,
        ctx: &OpContext<'_>,
        kind: Kind,
        current: &Observed,
    ) -> Result<(), CloudError> {
        claim::claim(self, ctx, kind, current).await
    }

    async fn preflight(&self, ctx: &OpContext<'_>, spec: &Spec) -> Result<(), CloudError> {
        match spec {
            Spec::DnsRecord(_) => route53::preflight(self, ctx, spec).await,
            Spec::Instance(_) => ec2::preflight(self, ctx, spec).await,
            Spec::Database(_) => rds::preflight(self, ctx, spec).await,
            _ => Ok(()),
        }
    }

    async fn list_owned(&self, env: &str) -> Result<Vec<Owned>, CloudError> {
        let (ec2, rds, elb, route53, secrets, iam) = futures::try_join!(
            ec2::list_owned(self, env),
            rds::list_owned(self, env),
            elb::list_owned(self, env),
            route53::list_owned(self, env),
            secretsmanager::list_owned(self, env),
            iam::list_owned(self, env),
        )?;
        Ok([ec2, rds, elb, route53, secrets, iam].concat())
    }

    fn begin_survey(&self, env: &str) {
        *self.survey.lock().unwrap() = Some(Arc::new(memo::Survey {
            env: env.to_string(),
            lists: Default::default(),
        }));
    }

    fn end_survey(&self) {
        *self.survey.lock().unwrap() = None;
    }

    async fn secret_value(&self, arn: &str) -> Result<String, CloudError> {
        secretsmanager::secret_value(self, arn).await
    }

    async fn snapshot(
        &self,
        query: &crate::verify::SnapshotQuery,
    ) -> Result<crate::verify::Snapshot, CloudError> {
        snapshot::snapshot(self, query).await
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::client::http::SharedHttpClient;

    use super::rds::testing::{Reply, Script};
    use super::sdk_config;

    /// Throttling answered to the first `throttled` calls, then a success.
    fn throttled_then_ok(throttled: usize) -> Script {
        Script::new(move |_, earlier| {
            if earlier.len() < throttled {
                Reply::error(400, "Throttling", "Rate exceeded")
            } else {
                Reply::ok("DescribeDBInstances", "<DBInstances/>")
            }
        })
    }

    /// A client built the way every client of a run is, from `sdk_config`, talking to
    /// `script`.
    async fn rds_on(script: &Script) -> aws_sdk_rds::Client {
        let shared = sdk_config("us-east-1").await;
        aws_sdk_rds::Client::from_conf(
            aws_sdk_rds::config::Builder::from(&shared)
                .credentials_provider(aws_credential_types::Credentials::new(
                    "AKIDTEST", "secret", None, None, "test",
                ))
                .http_client(SharedHttpClient::new(script.clone()))
                .build(),
        )
    }

    #[tokio::test]
    async fn deletes_outside_ec2_of_what_is_already_gone_succeed_and_other_refusals_do_not() {
        use crate::cloud::{Cloud, DeleteOptions, OpContext};
        use crate::model::{Attrs, Kind, LogicalId, Observed, Owner, Resolved};
        let id = LogicalId::new("x");
        let resolved = Resolved::default();
        let owner = Owner::default();
        let delete = DeleteOptions::default();
        let ctx = OpContext::quiet("lab", &owner, &id, "", &resolved, &delete);
        // Each service's own "no such thing", in its own protocol.
        let answer = |code: &'static str| {
            move |_: &super::rds::testing::Call, _: &[super::rds::testing::Call]| {
                if code.ends_with("Exception") {
                    Reply(
                        400,
                        "application/x-amz-json-1.1",
                        format!("{{\"__type\":\"{code}\",\"Message\":\"no such thing\"}}"),
                    )
                } else {
                    Reply::error(400, code, "no such thing")
                }
            }
        };
        let arn = |what: &str| format!("arn:aws:elasticloadbalancing:us-east-1:1:{what}/lab/1");
        for (kind, cloud_id, gone, other) in [
            (
                Kind::Database,
                "lab-datastore".to_string(),
                "DBInstanceNotFound",
                "AccessDenied",
            ),
            (
                Kind::DbSubnetGroup,
                "lab-db".into(),
                "DBSubnetGroupNotFoundFault",
                "AccessDenied",
            ),
            (
                Kind::LoadBalancer,
                arn("loadbalancer/net"),
                "LoadBalancerNotFound",
                "AccessDenied",
            ),
            (
                Kind::TargetGroup,
                arn("targetgroup"),
                "TargetGroupNotFound",
                "AccessDenied",
            ),
            (
                Kind::Listener,
                arn("listener/net"),
                "ListenerNotFound",
                "AccessDenied",
            ),
            (
                Kind::HostedZone,
                "Z1".into(),
                "NoSuchHostedZone",
                "AccessDenied",
            ),
            (
                Kind::Secret,
                "arn:aws:secretsmanager:us-east-1:1:secret:provision/lab/x".into(),
                "ResourceNotFoundException",
                "AccessDeniedException",
            ),
            (
                Kind::IamRole,
                "lab-role".into(),
                "NoSuchEntity",
                "AccessDenied",
            ),
            (
                Kind::InstanceProfile,
                "lab-profile".into(),
                "NoSuchEntity",
                "AccessDenied",
            ),
        ] {
            let current = Observed::new(cloud_id.clone(), Attrs::None);
            let script = Script::new(answer(gone));
            let cloud = script.cloud(std::time::Duration::from_secs(1));
            let result = cloud.delete(&ctx, kind, &current).await;
            assert!(
                result.is_ok(),
                "{kind} {cloud_id} already gone: {result:?} after {:?}",
                script.actions()
            );
            assert!(!script.calls().is_empty(), "{kind}: no call at all");
            let script = Script::new(answer(other));
            let cloud = script.cloud(std::time::Duration::from_secs(1));
            let result = cloud.delete(&ctx, kind, &current).await;
            assert!(result.is_err(), "{kind} {cloud_id}: {result:?}");
        }
    }

    #[tokio::test]
    async fn deleting_a_dns_record_already_gone_sends_no_change() {
        use crate::cloud::{Cloud, DeleteOptions, OpContext};
        use crate::model::{Attrs, Kind, LogicalId, Observed, Owner, Resolved};
        let id = LogicalId::new("record");
        let resolved = Resolved::default();
        let owner = Owner::default();
        let delete = DeleteOptions::default();
        let ctx = OpContext::quiet("lab", &owner, &id, "", &resolved, &delete);
        let current = Observed::new("Z1:rancher.lab.example.com:A", Attrs::None);
        // The zone lists neither the record nor its marker; a change would be refused.
        let script = Script::new(|call, _| {
            if call.body.is_empty() {
                Reply(
                    200,
                    "text/xml",
                    "<ListResourceRecordSetsResponse \
                     xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
                     <ResourceRecordSets/><IsTruncated>false</IsTruncated>\
                     <MaxItems>300</MaxItems></ListResourceRecordSetsResponse>"
                        .into(),
                )
            } else {
                Reply::error(400, "InvalidChangeBatch", "no such record")
            }
        });
        let cloud = script.cloud(std::time::Duration::from_secs(1));
        let result = cloud.delete(&ctx, Kind::DnsRecord, &current).await;
        assert!(result.is_ok(), "{result:?}");
        let calls = script.calls();
        assert!(
            !calls.is_empty() && calls.iter().all(|c| c.body.is_empty()),
            "only reads: {calls:?}"
        );
        // Its zone gone too: nothing to delete either.
        let script = Script::new(|_, _| Reply::error(404, "NoSuchHostedZone", "no such zone"));
        let cloud = script.cloud(std::time::Duration::from_secs(1));
        let result = cloud.delete(&ctx, Kind::DnsRecord, &current).await;
        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn the_sdk_retries_throttling_itself_before_the_engine_sees_it() {
        // Three throttled answers: the SDK's own retries absorb them (one call, four
        // tries). How many tries at most (8) and the backoff are `sdk_config`'s settings;
        // running out of them takes ~13 s of backoff, too slow for a unit test.
        let script = throttled_then_ok(3);
        rds_on(&script)
            .await
            .describe_db_instances()
            .send()
            .await
            .expect("throttling is retried by the SDK");
        assert_eq!(script.actions().len(), 4, "{:?}", script.actions());
    }
}
