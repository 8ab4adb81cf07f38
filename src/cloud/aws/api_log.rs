//! `-v` shows every AWS API call: an SDK interceptor logs, once per operation (retries
//! included), the service, the operation, the HTTP status (or the failure) and the time it
//! took, at `info` under `provision::api`. Nothing of the request or response body is
//! logged, so no secret can reach the log.

use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

#[derive(Debug)]
pub struct ApiLog;

#[derive(Debug, Clone)]
struct Started(Instant);

impl Storable for Started {
    type Storer = StoreReplace<Self>;
}

/// `EC2 DescribeVpcs → 200 (12 ms)`.
pub fn line(service: &str, operation: &str, outcome: &str, millis: u128) -> String {
    format!("{service} {operation} → {outcome} ({millis} ms)")
}

impl Intercept for ApiLog {
    fn name(&self) -> &'static str {
        "provision::ApiLog"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(Started(Instant::now()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !tracing::enabled!(target: "provision::api", tracing::Level::INFO) {
            return Ok(());
        }
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("?".into(), "?".into()));
        let millis = cfg
            .load::<Started>()
            .map(|s| s.0.elapsed().as_millis())
            .unwrap_or_default();
        let outcome = match (context.response(), context.output_or_error()) {
            (Some(r), _) => r.status().as_u16().to_string(),
            (None, Some(Err(_))) => "no response".to_string(),
            (None, _) => "?".to_string(),
        };
        tracing::info!(target: "provision::api", "{}", line(&service, &operation, &outcome, millis));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_call_reads_as_one_line() {
        assert_eq!(
            super::line("EC2", "DescribeVpcs", "200", 12),
            "EC2 DescribeVpcs → 200 (12 ms)"
        );
    }
}
