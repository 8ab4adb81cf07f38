//! Canned AWS answers for the adapter's async tests: an [`AwsCloud`] whose SDK clients
//! talk to a script instead of the network, and record every request they make.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

use super::super::AwsCloud;
use crate::cloud::{StepProgress, WaitSettings};

/// One request as the script saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// `DescribeDBInstances`, `GetSecretValue`, ...
    pub action: String,
    /// The form-encoded (query protocol) or JSON body.
    pub body: String,
}

impl Call {
    /// Whether the query body carries `name=value` (values are URL-encoded).
    pub fn has_param(&self, name: &str, value: &str) -> bool {
        self.body
            .split('&')
            .any(|p| p == format!("{name}={}", encode(value)))
    }

    /// Whether the query body names the parameter at all.
    pub fn names_param(&self, name: &str) -> bool {
        self.body
            .split('&')
            .any(|p| p.split('=').next() == Some(name))
    }
}

/// An answer: HTTP status, content type, body.
pub struct Reply(pub u16, pub &'static str, pub String);

impl Reply {
    /// A query-protocol (RDS) success: `<{action}Response><{action}Result>{inner}...`.
    pub fn ok(action: &str, inner: &str) -> Reply {
        Reply(
            200,
            "text/xml",
            format!(
                "<{action}Response xmlns=\"http://rds.amazonaws.com/doc/2014-10-31/\">\
                 <{action}Result>{inner}</{action}Result>\
                 <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>\
                 </{action}Response>"
            ),
        )
    }

    /// A query-protocol error with a code.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply(
            status,
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
                 <Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
            ),
        )
    }

    /// A JSON-protocol (Secrets Manager) success.
    pub fn json(body: String) -> Reply {
        Reply(200, "application/x-amz-json-1.1", body)
    }
}

type Handler = dyn Fn(&Call, &[Call]) -> Reply + Send + Sync;

/// The script: answers each request from what it is and what came before.
#[derive(Clone)]
pub struct Script {
    handler: Arc<Handler>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Script")
    }
}

impl Script {
    /// `handler(call, earlier calls)` answers every request.
    pub fn new(handler: impl Fn(&Call, &[Call]) -> Reply + Send + Sync + 'static) -> Self {
        Self {
            handler: Arc::new(handler),
            calls: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Every request so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The actions asked so far, in order.
    pub fn actions(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.action).collect()
    }

    /// A cloud whose every client answers from this script; waits poll every 5 ms and
    /// give up after `database`.
    pub fn cloud(&self, database: Duration) -> AwsCloud {
        let http = SharedHttpClient::new(self.clone());
        let creds =
            aws_credential_types::Credentials::new("AKIDTEST", "secret", None, None, "test");
        let region = aws_config::Region::new("us-east-1");
        macro_rules! client {
            ($sdk:ident) => {
                $sdk::Client::from_conf(
                    $sdk::Config::builder()
                        .behavior_version($sdk::config::BehaviorVersion::latest())
                        .region(region.clone())
                        .credentials_provider(creds.clone())
                        .http_client(http.clone())
                        .retry_config($sdk::config::retry::RetryConfig::disabled())
                        .build(),
                )
            };
        }
        AwsCloud {
            ec2: client!(aws_sdk_ec2),
            rds: client!(aws_sdk_rds),
            elb: client!(aws_sdk_elasticloadbalancingv2),
            route53: client!(aws_sdk_route53),
            secrets: client!(aws_sdk_secretsmanager),
            iam: client!(aws_sdk_iam),
            region: "us-east-1".into(),
            waits: WaitSettings {
                poll: Duration::from_millis(5),
                database,
                dependency: Duration::from_millis(200),
                ..WaitSettings::default()
            },
            memo: Default::default(),
            survey: Default::default(),
            instances: Default::default(),
            ec2_endpoint: crate::cloud::aws::reach::Target::resolve(
                "EC2",
                "ec2",
                "us-east-1",
                None,
                &|_| None,
            ),
            batches: Default::default(),
        }
    }
}

impl HttpConnector for Script {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = request
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let action = match request.headers().get("x-amz-target") {
            Some(target) => target.rsplit('.').next().unwrap_or_default().to_string(),
            None => body
                .split('&')
                .find_map(|p| p.strip_prefix("Action="))
                .unwrap_or_default()
                .to_string(),
        };
        let call = Call { action, body };
        let earlier = self.calls();
        let Reply(status, content_type, text) = (self.handler)(&call, &earlier);
        self.calls.lock().unwrap().push(call);
        let mut response = HttpResponse::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::from(text),
        );
        response.headers_mut().insert("content-type", content_type);
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for Script {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// Progress lines a step reported, and what it said it keeps.
#[derive(Default)]
pub struct Progress(pub Mutex<Vec<String>>, pub Mutex<Vec<String>>);

impl StepProgress for Progress {
    fn status(&self, status: &str) {
        self.0.lock().unwrap().push(status.to_string());
    }

    fn kept(&self, what: &str) {
        self.1.lock().unwrap().push(what.to_string());
    }
}

impl Progress {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// What the step said it leaves behind.
    pub fn kept_lines(&self) -> Vec<String> {
        self.1.lock().unwrap().clone()
    }
}

/// URL-encoding as the query protocol does it, enough for the values the tests use.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `<DBInstance>` XML for `lab-datastore`, tagged as ours, with the given status and
/// engine version; `extra` is spliced in (an `<Endpoint>`, a `<MasterUserSecret>`, ...).
pub fn db_xml(status: &str, version: &str, extra: &str) -> String {
    format!(
        "<DBInstance>\
         <DBInstanceIdentifier>lab-datastore</DBInstanceIdentifier>\
         <DBInstanceArn>arn:aws:rds:us-east-1:1:db:lab-datastore</DBInstanceArn>\
         <DBInstanceStatus>{status}</DBInstanceStatus>\
         <DBInstanceClass>db.t3.medium</DBInstanceClass>\
         <Engine>mysql</Engine><EngineVersion>{version}</EngineVersion>\
         <AllocatedStorage>20</AllocatedStorage>\
         <DeletionProtection>true</DeletionProtection>\
         <PubliclyAccessible>false</PubliclyAccessible>\
         <StorageEncrypted>true</StorageEncrypted>\
         <BackupRetentionPeriod>7</BackupRetentionPeriod>\
         <VpcSecurityGroups><VpcSecurityGroupMembership>\
         <VpcSecurityGroupId>sg-1</VpcSecurityGroupId><Status>active</Status>\
         </VpcSecurityGroupMembership></VpcSecurityGroups>\
         <TagList>\
         <Tag><Key>provision:env</Key><Value>lab</Value></Tag>\
         <Tag><Key>provision:id</Key><Value>datastore</Value></Tag>\
         </TagList>\
         {extra}\
         </DBInstance>"
    )
}

/// The `<Endpoint>` of an instance that is up.
pub const ENDPOINT: &str = "<Endpoint><Address>lab-datastore.abc.us-east-1.rds.amazonaws.com\
                            </Address><Port>3306</Port></Endpoint>";

/// `DescribeDBInstances` answering with one instance.
pub fn describe(db: &str) -> Reply {
    Reply::ok(
        "DescribeDBInstances",
        &format!("<DBInstances>{db}</DBInstances>"),
    )
}

/// `DescribeDBInstances` for an instance that does not exist.
pub fn not_found() -> Reply {
    Reply::error(
        404,
        "DBInstanceNotFound",
        "DBInstance lab-datastore not found.",
    )
}

/// `GetSecretValue` answering with `value` as the secret's text.
pub fn secret(arn: &str, value: &str) -> Reply {
    Reply::json(
        serde_json::json!({ "ARN": arn, "Name": "lab-datastore-password", "SecretString": value })
            .to_string(),
    )
}
