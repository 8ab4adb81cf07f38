//! Turning SDK errors into [`CloudError`] without losing the error code, and in words: an
//! SDK error's `Debug` form (`DispatchFailure { source: ConnectorError { … } }`) never
//! reaches a user.

use std::error::Error;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::cloud::{classify, CloudError};

/// The code of a [`CloudError`] when the credential chain found nothing usable.
pub const NO_CREDENTIALS: &str = "NoCredentials";

/// Longest part of an answer's body kept in a message.
const BODY_LIMIT: usize = 400;

/// Map any SDK error to a [`CloudError`], keeping the service's error code so the engine
/// can tell throttling and "in use" from real failures, and the HTTP status and body of an
/// answer the SDK could not read as an AWS error (a 5xx from a proxy or a load balancer).
pub fn sdk_error<E>(operation: &str, err: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + Error + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            answer_error(operation, e.code(), e.message(), service.raw())
        }
        SdkError::ResponseError(response) => {
            let raw = response.raw();
            let mut error = answer_error(operation, None, None, raw);
            if let CloudError::Api { message, .. } | CloudError::Transient { message, .. } =
                &mut error
            {
                let why = causes(&err);
                if !why.is_empty() {
                    message.push_str(&format!(" (unreadable answer: {why})"));
                }
            }
            error
        }
        SdkError::DispatchFailure(_) if credentials_error(&err).is_some() => {
            let not_loaded = matches!(
                credentials_error(&err),
                Some(
                    aws_credential_types::provider::error::CredentialsError::CredentialsNotLoaded(
                        _
                    )
                )
            );
            CloudError::Api {
                operation: operation.to_string(),
                code: NO_CREDENTIALS.to_string(),
                message: no_credentials_message(not_loaded, &causes(&err), &|name| {
                    std::env::var_os(name)
                }),
            }
        }
        SdkError::DispatchFailure(_) => CloudError::Transient {
            operation: operation.to_string(),
            code: "Network".to_string(),
            message: format!(
                "no answer from the AWS endpoint: {}. Likely causes: no network route to AWS \
                 from here, a proxy this network needs (HTTPS_PROXY, NO_PROXY), or \
                 AWS_ENDPOINT_URL pointing at a server that is not running",
                causes(&err)
            ),
        },
        SdkError::TimeoutError(_) => CloudError::Transient {
            operation: operation.to_string(),
            code: "Timeout".to_string(),
            message: format!("no answer in time: {}", causes(&err)),
        },
        _ => CloudError::api(operation, "Client", causes(&err)),
    }
}

/// A [`CloudError`] for an answer: the service's code and message when it sent them, else
/// the HTTP status and the start of the body; a 5xx always keeps its status and body.
fn answer_error(
    operation: &str,
    code: Option<&str>,
    message: Option<&str>,
    raw: &HttpResponse,
) -> CloudError {
    let status = raw.status().as_u16();
    let body = body_text(raw.body().bytes().unwrap_or_default());
    let http = match reason(status) {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    };
    let code = code.filter(|c| !c.is_empty()).unwrap_or(&http).to_string();
    let mut message = message.unwrap_or_default().to_string();
    if message.is_empty() {
        message = if body.is_empty() {
            format!("{http} with an empty body")
        } else {
            format!("{http}: {body}")
        };
    } else if status >= 500 && !message.contains(&status.to_string()) {
        message = if body.is_empty() || message.contains(&body) {
            format!("{message} ({http})")
        } else {
            format!("{message} ({http}: {body})")
        };
    }
    if status >= 500 {
        CloudError::Transient {
            operation: operation.to_string(),
            code,
            message,
        }
    } else {
        classify(operation, &code, &message)
    }
}

/// The body as one line of text, cut at [`BODY_LIMIT`] characters.
fn body_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > BODY_LIMIT {
        let cut: String = line.chars().take(BODY_LIMIT).collect();
        format!("{cut}…")
    } else {
        line
    }
}

fn reason(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// Why `err` happened, from its sources' own words (`io error: tcp connect error:
/// Connection refused (os error 111)`), each said once; never a `Debug` form.
pub fn causes(err: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = err.source();
    if next.is_none() {
        parts.push(err.to_string());
    }
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// The credential chain's error inside a failed call, if that is why it failed.
fn credentials_error<'a>(
    err: &'a (dyn Error + 'static),
) -> Option<&'a aws_credential_types::provider::error::CredentialsError> {
    let mut next = err.source();
    while let Some(cause) = next {
        if let Some(found) =
            cause.downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
        {
            return Some(found);
        }
        next = cause.source();
    }
    None
}

/// What the standard chain looked at, in its order, from the environment `var` reads, and
/// what to set. `not_loaded`: no source had credentials (else one failed: `why`).
pub fn no_credentials_message(
    not_loaded: bool,
    why: &str,
    var: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> String {
    let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
    let shown = |name: &str| {
        var(name)
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string_lossy().into_owned())
    };
    let home = shown("HOME").unwrap_or_else(|| "~".to_string());
    let profile = shown("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    let file = |var_name: &str, default: &str| {
        let path = shown(var_name).unwrap_or_else(|| format!("{home}/.aws/{default}"));
        let there = if std::path::Path::new(&path).exists() {
            "no usable entry"
        } else {
            "no such file"
        };
        format!("{path} ({there})")
    };
    let env_keys = match (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
        (true, true) => "set",
        (true, false) => "AWS_SECRET_ACCESS_KEY not set",
        (false, true) => "AWS_ACCESS_KEY_ID not set",
        (false, false) => "not set",
    };
    let web_identity = if set("AWS_WEB_IDENTITY_TOKEN_FILE") {
        "AWS_WEB_IDENTITY_TOKEN_FILE set"
    } else {
        "AWS_WEB_IDENTITY_TOKEN_FILE not set"
    };
    let container = if set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    {
        "AWS_CONTAINER_CREDENTIALS_*_URI set"
    } else {
        "not in a container with a task role"
    };
    let metadata = if shown("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v == "true") {
        "disabled by AWS_EC2_METADATA_DISABLED=true"
    } else {
        "no instance role answered (not on EC2, or no role)"
    };
    let head = if not_loaded {
        "no AWS credentials found".to_string()
    } else {
        format!("the AWS credentials could not be loaded: {why}")
    };
    format!(
        "{head}. The standard chain looked at: the environment (AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY: {env_keys}); profile `{profile}` in {} and {}; a web \
         identity token ({web_identity}); container credentials ({container}); the EC2 \
         instance metadata ({metadata}). Set AWS_PROFILE to a profile that holds credentials \
         (`aws configure`, or `aws sso login` for an SSO profile), or export \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary \
         ones)",
        file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        file("AWS_CONFIG_FILE", "config"),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::body::SdkBody;

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body.to_string()))
    }

    fn unknown_service_error(
        status: u16,
        body: &str,
    ) -> SdkError<aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsError, HttpResponse> {
        // What the SDK makes of an answer that is not an AWS error document: no code.
        SdkError::service_error(
            aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsError::generic(
                aws_smithy_types::error::ErrorMetadata::builder().build(),
            ),
            response(status, body),
        )
    }

    #[test]
    fn a_5xx_without_an_aws_error_keeps_its_status_and_body() {
        let err = sdk_error(
            "DescribeVpcs",
            unknown_service_error(503, "<html>upstream overloaded</html>"),
        );
        let text = err.to_string();
        assert!(err.is_transient(), "{text}");
        assert!(text.contains("HTTP 503 Service Unavailable"), "{text}");
        assert!(text.contains("upstream overloaded"), "{text}");
        assert!(!text.contains("Unknown"), "{text}");
    }

    #[test]
    fn a_5xx_with_an_aws_error_keeps_code_message_and_status() {
        let err = SdkError::service_error(
            aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("InternalError")
                    .message("An internal error has occurred")
                    .build(),
            ),
            response(
                500,
                "<Response><Errors><Error><Code>InternalError</Code></Error></Errors></Response>",
            ),
        );
        let text = sdk_error("DescribeVpcs", err).to_string();
        assert!(
            text.contains("InternalError: An internal error has occurred"),
            "{text}"
        );
        assert!(text.contains("HTTP 500"), "{text}");
    }

    #[test]
    fn a_4xx_is_classified_by_its_code() {
        let err = SdkError::service_error(
            aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("DependencyViolation")
                    .message("in use")
                    .build(),
            ),
            response(400, ""),
        );
        assert!(sdk_error("DeleteVpc", err).is_in_use());
    }

    #[test]
    fn causes_are_said_once_in_words() {
        #[derive(Debug, thiserror::Error)]
        #[error("dispatch failure")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("io error")]
        struct Inner(#[source] std::io::Error);
        let err = Outer(Inner(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        )));
        assert_eq!(causes(&err), "io error: Connection refused (os error 111)");
    }

    #[test]
    fn no_credentials_says_where_the_chain_looked_and_what_to_set() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().display().to_string();
        let env = |name: &str| match name {
            "HOME" => Some(home.clone().into()),
            "AWS_EC2_METADATA_DISABLED" => Some("true".into()),
            "AWS_ACCESS_KEY_ID" => Some("AKIAEXAMPLE".into()),
            _ => None,
        };
        let text = no_credentials_message(true, "", &env);
        assert!(text.starts_with("no AWS credentials found."), "{text}");
        for needle in [
            "AWS_SECRET_ACCESS_KEY not set",
            "profile `default`",
            &format!("{home}/.aws/credentials (no such file)"),
            &format!("{home}/.aws/config (no such file)"),
            "disabled by AWS_EC2_METADATA_DISABLED=true",
            "Set AWS_PROFILE",
            "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
        // Whether a key is set, never its value.
        assert!(!text.contains("AKIAEXAMPLE"), "{text}");
    }
}
