//! `[state] backend = "s3"`: one shared state for a team or CI, on S3 alone (no DynamoDB),
//! the way Terraform ≥ 1.10 does it.
//!
//! - **Lock**: the object `<key>.lock`, created with `If-None-Match: *` (exactly one
//!   creator wins) and holding owner, host, pid, command and start time. Released by
//!   deleting it, but only while it is still ours (same ETag). It outlives a crashed run:
//!   `provision unlock --force` removes it after showing who held it.
//! - **Writes**: every save sends `If-Match` with the ETag this run last saw (or
//!   `If-None-Match: *` for the first one), so two writers never overwrite each other
//!   silently; a run whose lock was forced away stops before its next write. A save that
//!   fails for good leaves the run's state in a local rescue file and says where.
//! - **Secrets** a teammate's run needs (registry CA and password, cluster token) live in
//!   the environment's Secrets Manager secret `provision/<env>/shared-secrets` (a resource
//!   of the environment, see `blueprint::add_shared_secrets`), never in the state object.
//!
//! Transient S3 errors are retried by the SDK (standard mode, 8 attempts, backoff).

use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption};

use super::backend::Backend;
use super::lock::{Holder, LockError, Unlock};
use super::{store, State, StateError, FORMAT_VERSION};
use crate::cloud::aws::{sdk_config, ApiLog};
use crate::config::S3State;

/// The S3 state backend of one environment.
pub struct S3Backend {
    s3: aws_sdk_s3::Client,
    secrets: aws_sdk_secretsmanager::Client,
    cfg: S3State,
    env: String,
    /// Where a save that failed for good leaves the run's state.
    rescue: PathBuf,
    /// ETag of the state object as this run last saw it; `None`: no object yet.
    etag: Mutex<Option<String>>,
    /// ETag of the lock object this run created, while it holds the lock.
    held: Mutex<Option<String>>,
}

/// How often a conditional write answered 409 ConditionalRequestConflict is tried again.
const CONFLICT_RETRIES: u32 = 5;

/// The pause before try `attempt` (1-based) after a 409: 100 ms, 200 ms, 400 ms, ...
fn conflict_pause(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(100 << attempt.min(6).saturating_sub(1))
}

/// What went wrong in one S3 call: the HTTP status and S3's error code.
struct Failure {
    status: Option<u16>,
    code: String,
    message: String,
}

impl Failure {
    fn of<E: ProvideErrorMetadata + std::error::Error + 'static>(
        err: SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    ) -> Self {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let (code, message) = match &err {
            SdkError::ServiceError(s) if s.err().code().is_some() => (
                s.err().code().unwrap_or_default().to_string(),
                s.err().message().unwrap_or_default().to_string(),
            ),
            // No AWS error document (a proxy's 5xx), no answer, no credentials: in words,
            // with the status and body kept.
            _ => match crate::cloud::aws::sdk_error("", err) {
                crate::cloud::CloudError::Api { code, message, .. }
                | crate::cloud::CloudError::Transient { code, message, .. }
                | crate::cloud::CloudError::InUse { code, message, .. } => (code, message),
                other => (String::new(), other.to_string()),
            },
        };
        Self {
            status,
            code,
            message,
        }
    }

    fn not_found(&self) -> bool {
        self.status == Some(404) || self.code == "NoSuchKey" || self.code == "NotFound"
    }

    /// `If-Match` / `If-None-Match` did not hold (412).
    fn precondition(&self) -> bool {
        self.status == Some(412) || self.code == "PreconditionFailed"
    }

    /// 409 ConditionalRequestConflict: another conditional write on the key is in flight;
    /// S3 asks to try again.
    fn conflict_in_flight(&self) -> bool {
        self.code == "ConditionalRequestConflict" || self.status == Some(409)
    }

    fn describe(&self, operation: &str) -> String {
        let what = match (self.code.as_str(), self.status) {
            ("AccessDenied", _) | (_, Some(403)) => format!(
                "access denied ({}); the state backend needs s3:GetBucketLocation, \
                 s3:GetBucketVersioning, s3:ListBucket, s3:GetObject, s3:PutObject and \
                 s3:DeleteObject on the bucket",
                self.code_or_status()
            ),
            ("NoSuchBucket", _) => "the bucket does not exist".to_string(),
            _ => format!("{}: {}", self.code_or_status(), self.message),
        };
        format!("{operation} failed: {what}")
    }

    fn code_or_status(&self) -> String {
        match (&self.code, self.status) {
            (c, _) if !c.is_empty() => c.clone(),
            (_, Some(s)) => format!("HTTP {s}"),
            _ => "no answer".to_string(),
        }
    }
}

/// The region S3 names for a `GetBucketLocation` answer (empty: us-east-1, `EU`: eu-west-1).
fn bucket_region(constraint: Option<&str>) -> String {
    match constraint {
        None | Some("") => "us-east-1".to_string(),
        Some("EU") => "eu-west-1".to_string(),
        Some(r) => r.to_string(),
    }
}

impl S3Backend {
    /// Connect and check the bucket (exists, reachable, in the configured region) before
    /// anything else; returns warnings to show (versioning off).
    pub async fn open(
        cfg: &S3State,
        env: &str,
        env_region: &str,
        state_dir: &std::path::Path,
    ) -> Result<(Self, Vec<String>), StateError> {
        let shared = sdk_config(&cfg.region).await;
        crate::cloud::aws::reach::Target::resolve(
            "S3",
            "s3",
            &cfg.region,
            shared.endpoint_url(),
            &|name| std::env::var(name).ok(),
        )
        .probe(crate::cloud::aws::reach::PROBE_TIMEOUT)
        .await
        .map_err(|message| StateError::Remote {
            location: format!("s3://{}/{}", cfg.bucket, cfg.key),
            message,
            rescue: None,
        })?;
        // A custom endpoint (an emulator, MinIO) serves buckets by path, not by host name.
        let path_style =
            shared.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(path_style)
                .interceptor(ApiLog)
                .build(),
        );
        let secrets_cfg = if env_region == cfg.region {
            shared
        } else {
            sdk_config(env_region).await
        };
        let secrets = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&secrets_cfg)
                .interceptor(ApiLog)
                .build(),
        );
        let backend = Self {
            s3,
            secrets,
            cfg: cfg.clone(),
            env: env.to_string(),
            rescue: state_dir.join(format!("{env}.rescue.json")),
            etag: Mutex::new(None),
            held: Mutex::new(None),
        };
        let warnings = backend.check_bucket().await?;
        Ok((backend, warnings))
    }

    fn remote(&self, message: String) -> StateError {
        StateError::Remote {
            location: self.cfg.url(),
            message,
            rescue: None,
        }
    }

    async fn check_bucket(&self) -> Result<Vec<String>, StateError> {
        let bucket = &self.cfg.bucket;
        let location = self
            .s3
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| {
                let f = Failure::of(e);
                if f.code == "NoSuchBucket" || f.status == Some(404) {
                    self.remote(format!(
                        "the bucket {bucket} does not exist (or is not visible to these \
                         credentials). Create it with versioning on, e.g. `aws s3api \
                         create-bucket --bucket {bucket}` and `aws s3api \
                         put-bucket-versioning --bucket {bucket} --versioning-configuration \
                         Status=Enabled`, or fix [state] bucket"
                    ))
                } else {
                    self.remote(f.describe("GetBucketLocation"))
                }
            })?;
        let actual = bucket_region(location.location_constraint().map(|c| c.as_str()));
        if actual != self.cfg.region {
            return Err(self.remote(format!(
                "the bucket {bucket} is in {actual}, not {}: set [state] region = \"{actual}\"",
                self.cfg.region
            )));
        }
        // Advisory only: a bucket whose versioning cannot be read still holds the state.
        let mut warnings = Vec::new();
        match self.s3.get_bucket_versioning().bucket(bucket).send().await {
            Ok(v) if v.status() == Some(&BucketVersioningStatus::Enabled) => {}
            Ok(_) => warnings.push(format!(
                "bucket {bucket} has versioning off: every save replaces the state with no way \
                 back. Turn it on (`aws s3api put-bucket-versioning --bucket {bucket} \
                 --versioning-configuration Status=Enabled`); old versions are the backups"
            )),
            Err(e) => warnings.push(format!(
                "could not read the versioning of bucket {bucket} ({}); keep it on: old \
                 versions are the state's backups",
                Failure::of(e).describe("GetBucketVersioning")
            )),
        }
        Ok(warnings)
    }

    fn lock_url(&self) -> PathBuf {
        PathBuf::from(format!("s3://{}/{}", self.cfg.bucket, self.cfg.lock_key()))
    }

    /// The lock object's holder and ETag, `None` when there is no lock.
    async fn read_lock(&self) -> Result<Option<(Option<Holder>, String)>, LockError> {
        match self
            .s3
            .get_object()
            .bucket(&self.cfg.bucket)
            .key(self.cfg.lock_key())
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map(|b| b.into_bytes())
                    .unwrap_or_default();
                Ok(Some((serde_json::from_slice(&bytes).ok(), etag)))
            }
            Err(e) => {
                let f = Failure::of(e);
                if f.not_found() {
                    Ok(None)
                } else {
                    Err(self.lock_error(f.describe("GetObject (lock)")))
                }
            }
        }
    }

    fn lock_error(&self, message: String) -> LockError {
        LockError::Io {
            path: self.lock_url(),
            source: std::io::Error::other(message),
        }
    }

    /// Checks that the lock this run took is still there and still ours.
    async fn check_lock(&self) -> Result<(), String> {
        let Some(ours) = self.held.lock().expect("lock slot").clone() else {
            return Err("this run never took it".into());
        };
        self.lock_is(&ours).await
    }

    /// Whether the lock object is the one with ETag `ours`; else why not.
    async fn lock_is(&self, ours: &str) -> Result<(), String> {
        match self
            .s3
            .head_object()
            .bucket(&self.cfg.bucket)
            .key(self.cfg.lock_key())
            .send()
            .await
        {
            Ok(out) if out.e_tag() == Some(ours) => Ok(()),
            Ok(_) => Err("another run holds it now".into()),
            Err(e) => {
                let f = Failure::of(e);
                if f.not_found() {
                    Err("the lock object is gone".into())
                } else {
                    // Cannot tell: do not write over what may be someone else's state.
                    Err(f.describe("HeadObject (lock)"))
                }
            }
        }
    }

    /// Keep `state` in the local rescue file; returns its path when that worked.
    fn rescue(&self, state: &State) -> Option<PathBuf> {
        let mut text = serde_json::to_vec_pretty(state).ok()?;
        text.push(b'\n');
        store::write_atomic(&self.rescue, None, &text, 0o600).ok()?;
        Some(self.rescue.clone())
    }

    /// Put `state` with the conditions of the last ETag seen.
    async fn put(&self, state: &State) -> Result<(), StateError> {
        if let Err(why) = self.check_lock().await {
            return Err(StateError::LockLost {
                location: self.lock_url().display().to_string(),
                why,
                rescue: self.rescue(state),
            });
        }
        let mut text = serde_json::to_vec_pretty(state).expect("state serializes");
        text.push(b'\n');
        let expected = self.etag.lock().expect("etag slot").clone();
        let sent = self
            .conditional_put(&self.cfg.key, &text, expected.as_deref())
            .await;
        match sent {
            Ok(etag) => {
                *self.etag.lock().expect("etag slot") = etag;
                Ok(())
            }
            Err(f) => {
                // The SDK's retry of a write whose reply was lost finds its own write in
                // place: the object holds exactly what this run sent.
                if f.precondition() {
                    if let Some(etag) = self.holds_exactly(&text).await {
                        *self.etag.lock().expect("etag slot") = Some(etag);
                        return Ok(());
                    }
                }
                if f.precondition() {
                    Err(StateError::Conflict {
                        location: self.cfg.url(),
                        etag: expected.unwrap_or_else(|| "absent".into()),
                        rescue: self.rescue(state),
                    })
                } else {
                    Err(StateError::Remote {
                        location: self.cfg.url(),
                        message: f.describe("PutObject"),
                        rescue: self.rescue(state),
                    })
                }
            }
        }
    }

    /// `PutObject` of `body` at `key` only if the object still has ETag `if_match` (`None`:
    /// only if there is no object), with the KMS key; a 409 ConditionalRequestConflict (a
    /// conditional write on the key in flight) is tried again. The new ETag, or why not.
    async fn conditional_put(
        &self,
        key: &str,
        body: &[u8],
        if_match: Option<&str>,
    ) -> Result<Option<String>, Failure> {
        let mut attempt = 0;
        loop {
            let mut put = self
                .s3
                .put_object()
                .bucket(&self.cfg.bucket)
                .key(key)
                .content_type("application/json")
                .body(ByteStream::from(body.to_vec()));
            put = match if_match {
                Some(etag) => put.if_match(etag),
                None => put.if_none_match("*"),
            };
            if let Some(kms) = &self.cfg.kms_key_id {
                put = put
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(kms);
            }
            match put.send().await {
                Ok(out) => return Ok(out.e_tag().map(str::to_string)),
                Err(e) => {
                    let f = Failure::of(e);
                    if f.conflict_in_flight() && attempt < CONFLICT_RETRIES {
                        attempt += 1;
                        tokio::time::sleep(conflict_pause(attempt)).await;
                        continue;
                    }
                    return Err(f);
                }
            }
        }
    }

    /// The state object's ETag when it holds exactly `bytes` (compared by SHA-256).
    async fn holds_exactly(&self, bytes: &[u8]) -> Option<String> {
        use sha2::{Digest, Sha256};
        let out = self
            .s3
            .get_object()
            .bucket(&self.cfg.bucket)
            .key(&self.cfg.key)
            .send()
            .await
            .ok()?;
        let etag = out.e_tag()?.to_string();
        let body = out.body.collect().await.ok()?.into_bytes();
        (Sha256::digest(&body) == Sha256::digest(bytes)).then_some(etag)
    }

    fn shared_secrets_name(&self) -> String {
        format!(
            "provision/{}/{}",
            self.env,
            crate::blueprint::ids::SHARED_SECRETS
        )
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn shares_secrets(&self) -> bool {
        true
    }

    /// The env's shared secrets bundle (`provision/<env>/shared-secrets`), `None` when the
    /// secret does not exist or is scheduled for deletion.
    async fn shared_secrets(&self) -> Result<Option<String>, StateError> {
        let name = self.shared_secrets_name();
        match self
            .secrets
            .get_secret_value()
            .secret_id(&name)
            .send()
            .await
        {
            Ok(out) => Ok(out.secret_string().map(str::to_string)),
            Err(e) => {
                let code = crate::cloud::aws::error_code(&e)
                    .unwrap_or_default()
                    .to_string();
                // Deleted (in its recovery window): InvalidRequestException.
                if code == "ResourceNotFoundException" || code == "InvalidRequestException" {
                    return Ok(None);
                }
                Err(StateError::Remote {
                    location: format!("Secrets Manager secret {name}"),
                    message: crate::cloud::aws::sdk_error("GetSecretValue", e).to_string(),
                    rescue: None,
                })
            }
        }
    }

    fn location(&self) -> String {
        self.cfg.url()
    }

    async fn load(&self) -> Result<Option<State>, StateError> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.cfg.bucket)
            .key(&self.cfg.key)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let f = Failure::of(e);
                if f.not_found() && f.code != "NoSuchBucket" {
                    *self.etag.lock().expect("etag slot") = None;
                    return Ok(None);
                }
                return Err(self.remote(f.describe("GetObject")));
            }
        };
        let etag = out.e_tag().map(str::to_string);
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| self.remote(format!("reading the state object: {e}")))?
            .into_bytes();
        let corrupt = |reason: String| StateError::RemoteCorrupt {
            location: self.cfg.url(),
            bucket: self.cfg.bucket.clone(),
            key: self.cfg.key.clone(),
            reason,
        };
        let state = store::parse(&bytes).map_err(corrupt)?;
        if state.format_version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {}; this provision reads version {FORMAT_VERSION}",
                state.format_version
            )));
        }
        if state.env != self.env {
            return Err(corrupt(format!(
                "it belongs to environment `{}`, but the config names `{}`",
                state.env, self.env
            )));
        }
        *self.etag.lock().expect("etag slot") = etag;
        Ok(Some(state))
    }

    async fn save(&self, state: &mut State) -> Result<(), StateError> {
        state.serial += 1;
        let saved = self.put(state).await;
        if saved.is_err() {
            state.serial -= 1;
        }
        saved
    }

    async fn overwrite(&self, state: &State) -> Result<(), StateError> {
        self.put(state).await
    }

    async fn lock(&self, command: &str) -> Result<(), LockError> {
        let holder = Holder::current(command);
        let body = serde_json::to_vec(&holder).expect("holder serializes");
        let sent = self
            .conditional_put(&self.cfg.lock_key(), &body, None)
            .await;
        match sent {
            Ok(etag) => {
                *self.held.lock().expect("lock slot") = etag;
                Ok(())
            }
            Err(f) => {
                if f.precondition() {
                    let found = self.read_lock().await?;
                    // Our own lock write, whose reply was lost and whose retry found it.
                    if let Some((Some(h), etag)) = &found {
                        if h.nonce.is_some() && h.nonce == holder.nonce {
                            *self.held.lock().expect("lock slot") = Some(etag.clone());
                            return Ok(());
                        }
                    }
                    let holder = found.and_then(|(h, _)| h).map(Box::new);
                    Err(LockError::Locked {
                        path: self.lock_url(),
                        holder,
                    })
                } else {
                    Err(self.lock_error(f.describe("PutObject (lock)")))
                }
            }
        }
    }

    async fn release(&self) {
        let Some(ours) = self.held.lock().expect("lock slot").take() else {
            return;
        };
        // Only our own lock: after `unlock --force` someone else's may be there (and may
        // arrive between the check and the delete: `If-Match` on our ETag).
        if self.lock_is(&ours).await.is_ok() {
            let deleted = self
                .s3
                .delete_object()
                .bucket(&self.cfg.bucket)
                .key(self.cfg.lock_key())
                .if_match(&ours)
                .send()
                .await;
            if let Err(e) = deleted {
                eprintln!(
                    "warning: could not release the lock {}: {}; `provision unlock --force` \
                     removes it",
                    self.lock_url().display(),
                    Failure::of(e).describe("DeleteObject")
                );
            }
        }
    }

    async fn unlock(&self, force: bool) -> Result<Unlock, LockError> {
        let Some((holder, etag)) = self.read_lock().await? else {
            return Ok(Unlock::WasFree);
        };
        if !force {
            return Err(LockError::Locked {
                path: self.lock_url(),
                holder: holder.map(Box::new),
            });
        }
        if let Some(h) = holder.as_ref().filter(|h| h.is_alive_here()) {
            return Err(LockError::HolderRunning {
                path: self.lock_url(),
                holder: Box::new(h.clone()),
            });
        }
        let mut delete = self
            .s3
            .delete_object()
            .bucket(&self.cfg.bucket)
            .key(self.cfg.lock_key());
        if !etag.is_empty() {
            delete = delete.if_match(&etag);
        }
        delete.send().await.map_err(|e| {
            let f = Failure::of(e);
            if f.precondition() {
                self.lock_error("the lock changed hands while it was being removed; run `provision unlock` again to see the new holder".into())
            } else {
                self.lock_error(f.describe("DeleteObject (lock)"))
            }
        })?;
        Ok(Unlock::Forced(holder))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, code: &str) -> Failure {
        Failure {
            status: Some(status),
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn refusals_say_what_is_wrong_and_which_permissions_are_needed() {
        let denied = failure(403, "AccessDenied").describe("PutObject");
        assert!(
            denied.contains("PutObject failed: access denied")
                && denied.contains("s3:PutObject")
                && denied.contains("s3:DeleteObject"),
            "{denied}"
        );
        assert!(failure(404, "NoSuchBucket")
            .describe("GetObject")
            .contains("does not exist"));
        // A lost race is a precondition failure; a write in flight is tried again.
        assert!(failure(412, "PreconditionFailed").precondition());
        assert!(!failure(409, "ConditionalRequestConflict").precondition());
        assert!(failure(409, "ConditionalRequestConflict").conflict_in_flight());
        assert!(!failure(412, "PreconditionFailed").conflict_in_flight());
        assert!(!failure(500, "InternalError").precondition());
        assert!(failure(404, "").not_found() && failure(400, "NoSuchKey").not_found());
    }

    /// `(status, ETag)` for a request, from its method and how many came before.
    type Answer = dyn Fn(&str, usize) -> (u16, String) + Send + Sync;

    /// An S3 that answers each request from its `answer` and records method, path and
    /// headers, so the backend's own calls can be seen.
    #[derive(Clone)]
    struct ScriptedS3 {
        answer: std::sync::Arc<Answer>,
        seen: std::sync::Arc<Mutex<Vec<(String, String, http::HeaderMap)>>>,
    }

    impl std::fmt::Debug for ScriptedS3 {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ScriptedS3")
        }
    }

    impl aws_smithy_runtime_api::client::http::HttpConnector for ScriptedS3 {
        fn call(
            &self,
            request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
        ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
            let method = request.method().to_string();
            let path = request.uri().to_string();
            let headers = request
                .headers()
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        http::HeaderName::from_bytes(k.as_bytes()).ok()?,
                        http::HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect::<http::HeaderMap>();
            let earlier = self.seen.lock().unwrap().len();
            let (status, etag) = (self.answer)(&method, earlier);
            self.seen.lock().unwrap().push((method, path, headers));
            let body = if status < 300 {
                String::new()
            } else {
                format!(
                    "<Error><Code>{}</Code><Message>scripted</Message></Error>",
                    if status == 409 {
                        "ConditionalRequestConflict"
                    } else {
                        "PreconditionFailed"
                    }
                )
            };
            let mut response = aws_smithy_runtime_api::client::orchestrator::HttpResponse::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap(),
                aws_smithy_types::body::SdkBody::from(body),
            );
            response
                .headers_mut()
                .insert("content-type", "application/xml");
            if !etag.is_empty() {
                response.headers_mut().insert("etag", etag);
            }
            aws_smithy_runtime_api::client::http::HttpConnectorFuture::ready(Ok(response))
        }
    }

    impl aws_smithy_runtime_api::client::http::HttpClient for ScriptedS3 {
        fn http_connector(
            &self,
            _settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
            _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
            aws_smithy_runtime_api::client::http::SharedHttpConnector::new(self.clone())
        }
    }

    /// A backend whose S3 is `script` (the SDK's own retries off: what is retried here is
    /// the backend's doing).
    fn backend_on(script: &ScriptedS3, dir: &std::path::Path) -> S3Backend {
        let http = aws_smithy_runtime_api::client::http::SharedHttpClient::new(script.clone());
        let creds =
            aws_credential_types::Credentials::new("AKIDTEST", "secret", None, None, "test");
        let region = aws_config::Region::new("us-east-1");
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(region.clone())
                .credentials_provider(creds.clone())
                .http_client(http.clone())
                .force_path_style(true)
                .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
                .build(),
        );
        let secrets = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::Config::builder()
                .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
                .region(region)
                .credentials_provider(creds)
                .http_client(http)
                .build(),
        );
        S3Backend {
            s3,
            secrets,
            cfg: S3State {
                bucket: "team".into(),
                key: "provision/lab.json".into(),
                region: "us-east-1".into(),
                kms_key_id: None,
            },
            env: "lab".into(),
            rescue: dir.join("lab.rescue.json"),
            etag: Mutex::new(None),
            held: Mutex::new(None),
        }
    }

    #[tokio::test]
    async fn a_write_answered_409_conflict_is_sent_again_with_the_same_condition() {
        // S3 answers 409 ConditionalRequestConflict while another conditional write on the
        // key is in flight, and asks to try again: twice here, then the write goes through.
        let script = ScriptedS3 {
            answer: std::sync::Arc::new(|_, earlier| match earlier {
                0 | 1 => (409, String::new()),
                _ => (200, "\"e2\"".into()),
            }),
            seen: Default::default(),
        };
        let dir = tempfile::tempdir().unwrap();
        let backend = backend_on(&script, dir.path());
        let etag = backend
            .conditional_put("provision/lab.json", b"{}", Some("\"e1\""))
            .await
            .unwrap_or_else(|f| panic!("{}", f.describe("PutObject")));
        assert_eq!(etag.as_deref(), Some("\"e2\""));
        let seen = script.seen.lock().unwrap().clone();
        assert_eq!(
            seen.len(),
            3,
            "{:?}",
            seen.iter().map(|s| &s.0).collect::<Vec<_>>()
        );
        for (method, path, headers) in &seen {
            assert_eq!(method, "PUT");
            assert!(path.contains("/team/provision/lab.json"), "{path}");
            assert_eq!(headers.get("if-match").unwrap(), "\"e1\"");
            assert!(headers.get("if-none-match").is_none());
        }
        // A write that finds the object changed (412) is not tried again.
        let script = ScriptedS3 {
            answer: std::sync::Arc::new(|_, _| (412, String::new())),
            seen: Default::default(),
        };
        let backend = backend_on(&script, dir.path());
        let failure = backend
            .conditional_put("provision/lab.json", b"{}", Some("\"e1\""))
            .await
            .unwrap_err();
        assert!(failure.precondition());
        assert_eq!(script.seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_release_deletes_the_lock_only_with_if_match_on_its_etag() {
        // HEAD finds our lock (same ETag); the DELETE must carry If-Match with it, so that
        // a lock someone took after an `unlock --force` in between is never deleted.
        let script = ScriptedS3 {
            answer: std::sync::Arc::new(|method, _| match method {
                "HEAD" => (200, "\"ours\"".into()),
                _ => (204, String::new()),
            }),
            seen: Default::default(),
        };
        let dir = tempfile::tempdir().unwrap();
        let backend = backend_on(&script, dir.path());
        *backend.held.lock().unwrap() = Some("\"ours\"".into());
        backend.release().await;
        let seen = script.seen.lock().unwrap().clone();
        let methods: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(methods, ["HEAD", "DELETE"]);
        let (_, path, headers) = &seen[1];
        assert!(path.contains("/team/provision/lab.json.lock"), "{path}");
        assert_eq!(headers.get("if-match").unwrap(), "\"ours\"");
        // Not ours any more (another ETag): nothing is deleted.
        let script = ScriptedS3 {
            answer: std::sync::Arc::new(|_, _| (200, "\"theirs\"".into())),
            seen: Default::default(),
        };
        let backend = backend_on(&script, dir.path());
        *backend.held.lock().unwrap() = Some("\"ours\"".into());
        backend.release().await;
        let methods: Vec<String> = script
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.0.clone())
            .collect();
        assert_eq!(methods, ["HEAD"]);
    }

    #[test]
    fn bucket_regions_follow_s3s_location_constraints() {
        assert_eq!(bucket_region(None), "us-east-1");
        assert_eq!(bucket_region(Some("")), "us-east-1");
        assert_eq!(bucket_region(Some("EU")), "eu-west-1");
        assert_eq!(bucket_region(Some("ap-south-2")), "ap-south-2");
    }
}
