//! Turning SDK errors into [`CloudError`] without losing the error code.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::cloud::{classify, CloudError};

/// Map any SDK error to a [`CloudError`], keeping the service's error code so the engine
/// can tell throttling and "in use" from real failures.
pub fn sdk_error<E, R>(operation: &str, err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown");
            let message = e.message().unwrap_or("").to_string();
            classify(operation, code, &message)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            CloudError::Transient {
                operation: operation.to_string(),
                code: "Network".to_string(),
                message: format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
            }
        }
        _ => CloudError::api(
            operation,
            "Client",
            format!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(&err)
            ),
        ),
    }
}

/// The error code of an SDK error, if the service sent one.
pub fn error_code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}
