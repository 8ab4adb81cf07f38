//! The AWS implementation of [`Cloud`]: one module per service, each holding the SDK
//! calls for its resource kinds. This file only builds the clients once and dispatches by
//! [`Kind`]. Scheduling, retries of whole steps and state live in the engine, not here.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

use super::{Cloud, CloudError, OpContext, Owned, WaitSettings};
use crate::model::{Kind, Observed, Spec};

mod api_log;
mod common;
mod ec2;
mod elb;
mod error;
mod iam;
mod rds;
mod retry;
mod route53;
mod secretsmanager;
mod snapshot;

pub use error::sdk_error;

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
}

impl AwsCloud {
    /// Build the clients and check that credentials can be had, so a missing profile or
    /// key fails with one clear message before the first API call.
    pub async fn new(region: &str, waits: WaitSettings) -> Result<Self, CloudError> {
        let retry = RetryConfig::standard()
            .with_max_attempts(8)
            .with_initial_backoff(Duration::from_millis(200))
            .with_max_backoff(Duration::from_secs(20));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(Duration::from_secs(60))
            .build();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .retry_config(retry)
            .timeout_config(timeouts)
            .load()
            .await;
        if let Some(provider) = shared.credentials_provider() {
            use aws_credential_types::provider::ProvideCredentials;
            if let Err(e) = provider.provide_credentials().await {
                return Err(CloudError::Refused(format!(
                    "no usable AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY (the SDK said: {e})"
                )));
            }
        }
        Ok(Self {
            // Every client logs its calls at -v (see `api_log`).
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(&shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            rds: aws_sdk_rds::Client::from_conf(
                aws_sdk_rds::config::Builder::from(&shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(
                aws_sdk_elasticloadbalancingv2::config::Builder::from(&shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            route53: aws_sdk_route53::Client::from_conf(
                aws_sdk_route53::config::Builder::from(&shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            secrets: aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(&shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&shared)
                    .interceptor(api_log::ApiLog)
                    .build(),
            ),
            region: region.to_string(),
            waits,
        })
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

    async fn preflight(&self, ctx: &OpContext<'_>, spec: &Spec) -> Result<(), CloudError> {
        match spec {
            Spec::DnsRecord(_) => route53::preflight(self, ctx, spec).await,
            Spec::Instance(_) => ec2::preflight(self, ctx, spec).await,
            Spec::Database(_) => rds::preflight(self, ctx, spec).await,
            _ => Ok(()),
        }
    }

    async fn list_owned(&self, env: &str) -> Result<Vec<Owned>, CloudError> {
        let mut all = ec2::list_owned(self, env).await?;
        all.extend(rds::list_owned(self, env).await?);
        all.extend(elb::list_owned(self, env).await?);
        all.extend(route53::list_owned(self, env).await?);
        all.extend(secretsmanager::list_owned(self, env).await?);
        all.extend(iam::list_owned(self, env).await?);
        Ok(all)
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
