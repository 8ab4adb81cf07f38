//! How an error reaches the operator: once, in words, with a hint for the AWS errors
//! operators meet most.
//!
//! What to do about the AWS errors operators meet most, found by the error code (and the
//! message) in an error's text.

/// A hint for an error's text (`Operation: Code: message`), if it is a common one.
pub fn hint(text: &str) -> Option<String> {
    let has = |needle: &str| text.contains(needle);
    if has("UnauthorizedOperation") || has("AccessDenied") || has("not authorized to perform") {
        let action = missing_iam_action(text);
        return Some(match action {
            Some(action) => format!(
                "the AWS identity in use lacks the IAM permission `{action}`; add it to its policy (or use another profile) and run again"
            ),
            None => "the AWS identity in use lacks a permission this step needs; check its IAM policy (the message names the action) and run again".to_string(),
        });
    }
    if has("ExpiredToken")
        || has("RequestExpired")
        || has("token included in the request is expired")
    {
        return Some(
            "your AWS session token has expired: refresh your credentials (e.g. `aws sso login` or a new `aws sts` session) and run again".into(),
        );
    }
    // Our own message already says where the chain looked and what to set.
    if has("The standard chain looked at") {
        return None;
    }
    if has("no credentials")
        || has("NoCredentials")
        || has("failed to load credentials")
        || has("credentials provider was not enabled")
    {
        return Some(
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or log in with `aws sso login`".into(),
        );
    }
    if has("AuthFailure") || has("InvalidClientTokenId") || has("SignatureDoesNotMatch") {
        return Some(
            "AWS did not accept the credentials: check AWS_PROFILE / the access key, and that the region in the config is enabled for the account".into(),
        );
    }
    if has("InvalidAMIID") {
        return Some(
            "the AMI in `nodes.ami` does not exist in the config's region (AMI ids differ per region); look up the id for this region and set nodes.ami".into(),
        );
    }
    if has("LimitExceeded")
        || has("QuotaExceeded")
        || has("InstanceLimitExceeded")
        || has("VcpuLimitExceeded")
    {
        return Some(
            "an AWS service quota is reached in this region: delete unused resources or request an increase in the Service Quotas console, then run again".into(),
        );
    }
    if has("NoSuchHostedZone") || has("HostedZoneNotFound") || (has("zone") && has("not found")) {
        return Some(
            "the Route53 zone in `dns.zone` was not found: check its name (or use its id), or set dns.private_zone = true to have one created".into(),
        );
    }
    if has("OptInRequired") || has("UnrecognizedClientException") || has("InvalidRegion") {
        return Some(
            "check the `region` in the config: it must be a region enabled for this account (and AWS_ENDPOINT_URL, if set, must point at a running endpoint)".into(),
        );
    }
    if has("Unsupported") && has("instance type") {
        return Some(
            "the instance type is not offered in that availability zone; pick another type or region".into(),
        );
    }
    None
}

/// The IAM action named in an authorization message (`... not authorized to perform:
/// ec2:RunInstances on resource ...`).
fn missing_iam_action(text: &str) -> Option<String> {
    let at = text
        .find("perform: ")
        .map(|i| i + "perform: ".len())
        .or_else(|| text.find("perform ").map(|i| i + "perform ".len()))?;
    let action: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == ':' || *c == '-' || *c == '*')
        .collect();
    action.contains(':').then_some(action)
}

/// The error once, for people: a config error with its source lines and carets, anything
/// else as its message, the causes that add something, and a hint for common AWS errors.
/// Never a debug dump.
pub fn render_error(
    err: &anyhow::Error,
    read_source: impl Fn(&std::path::Path) -> Option<String>,
) -> String {
    use std::io::IsTerminal;
    if let Some(config) = err.downcast_ref::<crate::config::ConfigError>() {
        if let Some(source) = read_source(config.path()) {
            let color = super::Style::new(std::io::stderr().is_terminal()).color;
            return config.render_with_source(&source, color);
        }
    }
    let mut out = format!("error: {err}\n");
    let mut source = err.source();
    let mut first = true;
    let mut all = err.to_string();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Skip causes that only repeat the message above.
        if !all.contains(&text) {
            if first {
                out.push_str("\nCaused by:\n");
                first = false;
            }
            out.push_str(&format!("    {text}\n"));
            all.push_str(&text);
        }
        source = cause.source();
    }
    if !all.contains("hint: ") {
        if let Some(hint) = hint(&all) {
            out.push_str(&format!("\nhint: {hint}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_names_the_missing_action() {
        let text = "RunInstances: UnauthorizedOperation: You are not authorized to perform: ec2:RunInstances on resource: arn:aws:ec2:us-east-1:1:instance/*";
        let h = hint(text).unwrap();
        assert!(h.contains("`ec2:RunInstances`"), "{h}");
        let text = "CreateDBInstance: AccessDenied: User: arn:aws:iam::1:user/x is not authorized to perform: rds:CreateDBInstance";
        assert!(hint(text).unwrap().contains("`rds:CreateDBInstance`"));
    }

    #[test]
    fn common_errors_have_hints_and_others_none() {
        for (text, want) in [
            ("DescribeImages: InvalidAMIID.NotFound: The image id '[ami-1]' does not exist", "nodes.ami"),
            ("CreateVpc: VpcLimitExceeded: The maximum number of VPCs has been reached.", "quota"),
            ("DescribeVpcs: ExpiredToken: The security token included in the request is expired", "expired"),
            ("ListHostedZonesByName: NoSuchHostedZone: no zone", "dns.zone"),
            ("DescribeVpcs: AuthFailure: AWS was not able to validate the provided access credentials", "credentials"),
            ("DescribeVpcs: OptInRequired: You are not subscribed to this service", "region"),
        ] {
            let h = hint(text).unwrap_or_else(|| panic!("no hint for {text}"));
            assert!(h.contains(want), "{text}: {h}");
        }
        assert_eq!(hint("CreateVpc: InvalidParameterValue: bad cidr"), None);
    }

    #[test]
    fn aws_errors_name_operation_resource_code_message_and_a_hint() {
        use crate::cloud::CloudError;
        use crate::engine::PlanError;
        let planning = anyhow::Error::new(PlanError::Cloud {
            id: crate::model::LogicalId::new("node-1"),
            kind: crate::model::Kind::Instance,
            source: CloudError::api(
                "DescribeImages",
                "InvalidAMIID.NotFound",
                "The image id '[ami-0123456789abcdef0]' does not exist",
            ),
        });
        let step = anyhow::anyhow!(
            "1 step(s) failed (3 succeeded and are saved in the state):\n  - create vpc: CreateVpc: \
             UnauthorizedOperation: You are not authorized to perform: ec2:CreateVpc\n    hint: {}",
            hint("not authorized to perform: ec2:CreateVpc").unwrap()
        );
        let text = format!(
            "{}\n{}",
            render_error(&planning, |_| None),
            render_error(&step, |_| None)
        );
        insta::assert_snapshot!(text);
        assert!(
            text.contains("`node-1`") && text.contains("DescribeImages"),
            "{text}"
        );
        assert!(text.contains("hint: the AMI in `nodes.ami`"), "{text}");
        // One hint per failure, not a second one for the whole error.
        assert_eq!(text.matches("hint: ").count(), 2, "{text}");
        assert!(
            !text.contains("Api {") && !text.contains("Cloud {"),
            "a debug dump: {text}"
        );
    }

    #[test]
    fn config_errors_are_rendered_with_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provision.toml");
        std::fs::write(&path, "name = \"lab\"\nbogus = 1\n").unwrap();
        let err = crate::config::load(&path).expect_err("unknown key");
        let err = anyhow::Error::new(err);
        let text = render_error(&err, |p| std::fs::read_to_string(p).ok());
        assert!(text.starts_with("error: "), "{text}");
        assert!(text.contains("provision.toml:2:1: bogus"), "{text}");
        assert!(
            text.contains("2 | bogus = 1") && text.contains("^^^^^"),
            "{text}"
        );
    }
}
