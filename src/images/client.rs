//! A thin OCI distribution client on hyper 1 + rustls (the stack already in the tree).
//!
//! Why our own: the transfers must survive what a workstation's link does to them. Every
//! idempotent request is retried (429 with `Retry-After` honoured, 5xx and dropped
//! connections with backoff); blob downloads resume with `Range` (in `pull.rs`); large
//! uploads go in chunks whose offset is asked back from the registry after a failure.
//! TLS is verified against the registry's *name* even when the bytes go to another
//! address (`--via`: a tunnel's local end). Credentials live only in request headers: they
//! never appear in an error, a log line or an event.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;

pub type Body = BoxBody<Bytes, io::Error>;

/// How long a TCP connect may take before it counts as a failed attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a request may wait for the response's headers (an upload's whole body is
/// sent by then: large blobs go in chunks).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a blob download may go without a byte before it is resumed elsewhere.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Media types a manifest GET/HEAD accepts, in preference order.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A user name and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// How to reach one registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `http://` instead of `https://` (only when asked for).
    pub plain_http: bool,
    /// PEM certificates trusted in addition to the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Connect to this `host:port` instead, still verifying TLS as the registry's name.
    pub via: Option<String>,
    pub credentials: Option<Credentials>,
    /// Attempts per request before giving up (retries = attempts - 1).
    pub attempts: u32,
}

/// Counters for the summary and the tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
}

/// A failed registry operation, in words (never a header, never a credential).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RegistryError(pub String);

impl RegistryError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;

/// Connects to the request's host, or to the `--via` address for the registry's host; the
/// TLS layer above still sees (and verifies) the registry's name.
#[derive(Clone)]
struct ViaConnector {
    overrides: Arc<HashMap<String, String>>,
}

impl tower_service::Service<Uri> for ViaConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = uri.host().unwrap_or("").to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let key = format!("{host}:{port}");
        let target = self.overrides.get(&key).cloned().unwrap_or(key);
        Box::pin(async move {
            let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "cannot connect to {target}: no answer in {} s",
                            CONNECT_TIMEOUT.as_secs()
                        ),
                    )
                })?
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot connect to {target}: {e}"))
                })?;
            let _ = s.set_nodelay(true);
            Ok(TokioIo::new(s))
        })
    }
}

type HyperClient = Client<hyper_rustls::HttpsConnector<ViaConnector>, Body>;

/// One registry: its address, credentials and the tokens it handed out.
pub struct Registry {
    /// `host[:port]` as in URLs (`registry-1.docker.io`, `127.0.0.1:5000`).
    host: String,
    scheme: &'static str,
    client: HyperClient,
    credentials: Option<Credentials>,
    /// Authorization header per repository (bearer tokens are scoped) or `*` (basic).
    auth: Mutex<HashMap<String, HeaderValue>>,
    attempts: u32,
    pub stats: Arc<Stats>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Registry({}://{})", self.scheme, self.host)
    }
}

/// A challenge from `WWW-Authenticate`.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

fn parse_challenge(v: &str) -> Option<Challenge> {
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (val, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(k.trim().to_ascii_lowercase(), val.to_string());
        s = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// Loads the system's roots plus `extra` PEM certificates into a rustls configuration.
fn tls_config(extra: Option<&[u8]>) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs_load() {
        let _ = roots.add(cert);
    }
    if let Some(pem) = extra {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| anyhow::anyhow!("the CA file is not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("the CA file holds an unusable certificate: {e}"))?;
            n += 1;
        }
        if n == 0 {
            anyhow::bail!("the CA file holds no PEM certificate");
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn rustls_native_certs_load() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    // hyper-rustls' `native-tokio` brings rustls-native-certs; ask it through the builder
    // would hide the custom CA, so load the roots here once.
    static ROOTS: std::sync::OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> =
        std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| rustls_native_certs::load_native_certs().certs)
        .clone()
}

/// What a manifest HEAD/GET answered.
#[derive(Debug, Clone)]
pub struct ManifestInfo {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// The answer to a blob GET: its status (200 or 206) and the body to stream.
pub struct BlobStream {
    pub partial: bool,
    pub body: Incoming,
}

/// What one upload request carries: `len` bytes from `start`; `whole` when that is the
/// entire blob (a monolithic `PUT ?digest=`), else one chunk (`PATCH`).
#[derive(Debug, Clone, Copy)]
pub struct Piece {
    pub start: u64,
    pub len: u64,
    pub whole: bool,
}

/// Where a blob upload stands.
pub enum Mount {
    Mounted,
    /// The registry opened an upload instead (at this URL).
    Upload(String),
}

impl Registry {
    /// A client for registry `host` (`name[:port]`).
    pub fn new(host: &str, opts: Options) -> anyhow::Result<Self> {
        let tls = tls_config(opts.ca_pem.as_deref())?;
        let scheme = if opts.plain_http { "http" } else { "https" };
        let mut overrides = HashMap::new();
        if let Some(via) = &opts.via {
            let default_port = if opts.plain_http { 80 } else { 443 };
            let key = if host
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                host.to_string()
            } else {
                format!("{host}:{default_port}")
            };
            overrides.insert(key, via.clone());
        }
        let connector = ViaConnector {
            overrides: Arc::new(overrides),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self {
            host: host.to_string(),
            scheme,
            client,
            credentials: opts.credentials,
            auth: Mutex::new(HashMap::new()),
            attempts: opts.attempts.max(1),
            stats: Arc::new(Stats::default()),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.host, path)
    }

    /// Absolute form of a `Location` header (distribution may answer a path).
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            self.url(location)
        }
    }

    /// Whoever reads a message must not learn a URL's upload state: keep the path only.
    fn describe(&self, method: &Method, url: &str) -> String {
        let path = url.split('?').next().unwrap_or(url);
        let path = path
            .strip_prefix(&format!("{}://{}", self.scheme, self.host))
            .unwrap_or(path);
        format!("{method} {}{path}", self.host)
    }

    fn auth_header(&self, repo: &str) -> Option<HeaderValue> {
        let map = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        map.get(repo).or_else(|| map.get("*")).cloned()
    }

    async fn raw(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Body,
        auth: Option<HeaderValue>,
    ) -> std::result::Result<http::Response<Incoming>, String> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req.body(body).map_err(|e| format!("bad request: {e}"))?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        // A registry that takes the request and never answers is retried like a dropped
        // connection, not waited on forever.
        let answered = tokio::time::timeout(RESPONSE_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| {
                format!(
                    "no answer within {} s (the connection stalled)",
                    RESPONSE_TIMEOUT.as_secs()
                )
            })?;
        answered.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            msg
        })
    }

    /// Answers a challenge: fetches a token (or keeps basic credentials) for `repo`.
    async fn authenticate(&self, repo: &str, challenge: &str) -> Result<()> {
        let basic = self.credentials.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.password);
            let mut v = HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            ))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
            v.set_sensitive(true);
            v
        });
        match parse_challenge(challenge) {
            Some(Challenge::Basic) => {
                let v = basic.ok_or_else(|| {
                    RegistryError::new(format!(
                        "{} asks for a user name and password and none is known for it \
                         (add it to $REGISTRY_AUTH_FILE or $DOCKER_CONFIG/config.json)",
                        self.host
                    ))
                })?;
                self.auth
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert("*".into(), v);
                Ok(())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let mut url = realm.clone();
                let mut sep = if url.contains('?') { '&' } else { '?' };
                if let Some(s) = &service {
                    url.push_str(&format!("{sep}service={}", percent_encode(s)));
                    sep = '&';
                }
                if let Some(s) = &scope {
                    for part in s.split(' ') {
                        url.push_str(&format!("{sep}scope={}", percent_encode(part)));
                        sep = '&';
                    }
                }
                let mut last = String::new();
                for attempt in 0..self.attempts {
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    let resp = match self
                        .raw(Method::GET, &url, &HeaderMap::new(), empty(), basic.clone())
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => {
                            last = e;
                            continue;
                        }
                    };
                    let status = resp.status();
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                        last = format!("answered {status}");
                        continue;
                    }
                    if !status.is_success() {
                        return Err(RegistryError::new(format!(
                            "the token service of {} refused access to {repo}: {status}{}",
                            self.host,
                            if basic.is_some() {
                                " (check the credentials in the auth file)"
                            } else {
                                " (no credentials are known for it)"
                            }
                        )));
                    }
                    #[derive(serde::Deserialize)]
                    struct Token {
                        token: Option<String>,
                        access_token: Option<String>,
                    }
                    let t: Token = serde_json::from_slice(&body).map_err(|_| {
                        RegistryError::new(format!(
                            "the token service of {} answered something that is not a token",
                            self.host
                        ))
                    })?;
                    let tok = t.token.or(t.access_token).ok_or_else(|| {
                        RegistryError::new(format!(
                            "the token service of {} answered no token",
                            self.host
                        ))
                    })?;
                    let mut v = HeaderValue::from_str(&format!("Bearer {tok}")).map_err(|_| {
                        RegistryError::new("the token service answered an unusable token")
                    })?;
                    v.set_sensitive(true);
                    self.auth
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(repo.to_string(), v);
                    return Ok(());
                }
                Err(RegistryError::new(format!(
                    "the token service of {} failed: {last}",
                    self.host
                )))
            }
            None => Err(RegistryError::new(format!(
                "{} asks for an authentication scheme provision does not speak",
                self.host
            ))),
        }
    }

    /// Sends a request whose body can be rebuilt, retrying what is worth retrying and
    /// answering one authentication challenge. Returns the final response (any status).
    async fn send(
        &self,
        repo: &str,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<http::Response<Incoming>> {
        let mut authed = false;
        let mut attempt = 0;
        loop {
            let b = body.clone().map(full).unwrap_or_else(empty);
            let res = self
                .raw(method.clone(), url, &headers, b, self.auth_header(repo))
                .await;
            attempt += 1;
            let wait = match res {
                Err(e) => {
                    // A certificate that does not verify will not verify on a retry.
                    if e.contains("certificate") {
                        return Err(RegistryError::new(format!(
                            "{}: the registry's TLS certificate does not verify as `{}` \
                             against the trusted CA ({e})",
                            self.describe(&method, url),
                            self.host.split(':').next().unwrap_or(&self.host)
                        )));
                    }
                    if attempt >= self.attempts {
                        return Err(RegistryError::new(format!(
                            "{}: {e} (after {attempt} attempts)",
                            self.describe(&method, url)
                        )));
                    }
                    backoff(attempt)
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED && !authed {
                        authed = true;
                        let challenge = resp
                            .headers()
                            .get(header::WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        drain(resp).await;
                        self.authenticate(repo, &challenge).await?;
                        attempt -= 1;
                        continue;
                    }
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || matches!(status.as_u16(), 500 | 502 | 503 | 504);
                    if !retryable || attempt >= self.attempts {
                        return Ok(resp);
                    }
                    let wait = retry_after(resp.headers()).unwrap_or_else(|| backoff(attempt));
                    drain(resp).await;
                    wait
                }
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                "{}: retrying in {} ms",
                self.describe(&method, url),
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// A success is read to its end; anything else is the failure of `what`.
    async fn done(
        &self,
        resp: http::Response<Incoming>,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        if resp.status().is_success() {
            drain(resp).await;
            Ok(())
        } else {
            Err(self.fail(&what(), resp).await)
        }
    }

    async fn fail(&self, what: &str, resp: http::Response<Incoming>) -> RegistryError {
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let detail = registry_error_text(&body);
        RegistryError::new(format!(
            "{what}: {} {}{}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            detail.map(|d| format!(" ({d})")).unwrap_or_default()
        ))
    }

    /// `GET /v2/`: reachable, and credentials accepted when asked for.
    pub async fn ping(&self) -> Result<()> {
        let url = self.url("/v2/");
        let resp = self
            .send("*", Method::GET, &url, HeaderMap::new(), None)
            .await?;
        self.done(resp, || format!("GET {}/v2/", self.host)).await
    }

    fn manifest_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        h
    }

    /// `HEAD` a manifest: `None` when the registry does not have it.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestInfo>> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(repo, Method::HEAD, &url, Self::manifest_headers(), None)
            .await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self
                .fail(&format!("HEAD {}/{repo}:{reference}", self.host), resp)
                .await);
        }
        let h = resp.headers();
        let digest = h
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let media_type = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let size = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        drain(resp).await;
        match digest {
            Some(digest) => Ok(Some(ManifestInfo {
                digest,
                media_type,
                size,
            })),
            // Without the digest header a HEAD says nothing useful: fetch it.
            None => Ok(self
                .get_manifest(repo, reference)
                .await
                .map(|(i, _)| Some(i))?),
        }
    }

    /// `GET` a manifest: its bytes exactly as served and their digest (checked against
    /// `reference` when that is a digest).
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<(ManifestInfo, Bytes)> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let what = format!("GET manifest {}/{repo}:{reference}", self.host);
        let resp = self
            .send(repo, Method::GET, &url, Self::manifest_headers(), None)
            .await?;
        if !resp.status().is_success() {
            return Err(self.fail(&what, resp).await);
        }
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| RegistryError::new(format!("{what}: the connection broke: {e}")))?
            .to_bytes();
        self.stats
            .bytes_received
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if reference.starts_with("sha256:") && reference != digest {
            return Err(RegistryError::new(format!(
                "{what}: the registry served content with digest {digest}"
            )));
        }
        Ok((
            ManifestInfo {
                digest,
                media_type,
                size: body.len() as u64,
            },
            body,
        ))
    }

    /// `GET` a blob from `offset` (a `Range` request when non-zero), following redirects
    /// (Docker Hub serves blobs from a CDN) without sending credentials there.
    pub async fn get_blob(&self, repo: &str, digest: &str, offset: u64) -> Result<BlobStream> {
        let mut url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let what = format!("GET blob {digest} from {}/{repo}", self.host);
        let mut headers = HeaderMap::new();
        if offset > 0 {
            headers.insert(
                header::RANGE,
                HeaderValue::from_str(&format!("bytes={offset}-")).expect("ascii"),
            );
        }
        let mut resp = self
            .send(repo, Method::GET, &url, headers.clone(), None)
            .await?;
        for _ in 0..5 {
            if !resp.status().is_redirection() {
                break;
            }
            let Some(loc) = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| self.absolute(l))
            else {
                break;
            };
            drain(resp).await;
            url = loc;
            resp = self
                .redirected_get(&url, &headers)
                .await
                .map_err(|e| RegistryError::new(format!("{what}: following the redirect: {e}")))?;
        }
        let status = resp.status();
        if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
            return Ok(BlobStream {
                partial: status == StatusCode::PARTIAL_CONTENT,
                body: resp.into_body(),
            });
        }
        Err(self.fail(&what, resp).await)
    }

    /// A GET to a redirect target (no Authorization: it is another host), retried.
    async fn redirected_get(
        &self,
        url: &str,
        headers: &HeaderMap,
    ) -> std::result::Result<http::Response<Incoming>, String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.raw(Method::GET, url, headers, empty(), None).await {
                Ok(r)
                    if (r.status().is_server_error() || r.status() == 429)
                        && attempt < self.attempts =>
                {
                    let wait = retry_after(r.headers()).unwrap_or_else(|| backoff(attempt));
                    drain(r).await;
                    tokio::time::sleep(wait).await;
                }
                Ok(r) => return Ok(r),
                Err(e) if attempt < self.attempts => {
                    tracing::debug!("redirected GET failed: {e}");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `HEAD` a blob: its size when the registry has it.
    pub async fn head_blob(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .send(repo, Method::HEAD, &url, HeaderMap::new(), None)
            .await?;
        match resp.status() {
            s if s.is_success() => {
                let size = resp
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                drain(resp).await;
                Ok(Some(size))
            }
            StatusCode::NOT_FOUND => {
                drain(resp).await;
                Ok(None)
            }
            _ => Err(self
                .fail(&format!("HEAD blob {digest} in {}/{repo}", self.host), resp)
                .await),
        }
    }

    /// Starts an upload to `repo`, mounting `digest` from repository `from` when given.
    pub async fn start_upload(&self, repo: &str, mount: Option<(&str, &str)>) -> Result<Mount> {
        let path = match mount {
            Some((digest, from)) => format!(
                "/v2/{repo}/blobs/uploads/?mount={}&from={}",
                percent_encode(digest),
                percent_encode(from)
            ),
            None => format!("/v2/{repo}/blobs/uploads/"),
        };
        let url = self.url(&path);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let resp = self
            .send(repo, Method::POST, &url, h, Some(Bytes::new()))
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => {
                drain(resp).await;
                Ok(Mount::Mounted)
            }
            StatusCode::ACCEPTED => {
                let loc = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|l| self.absolute(l));
                drain(resp).await;
                loc.map(Mount::Upload).ok_or_else(|| {
                    RegistryError::new(format!(
                        "POST {}/v2/{repo}/blobs/uploads/: no Location in the answer",
                        self.host
                    ))
                })
            }
            _ => Err(self
                .fail(
                    &format!("POST {}/v2/{repo}/blobs/uploads/", self.host),
                    resp,
                )
                .await),
        }
    }

    fn with_digest(location: &str, digest: &str) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={}", percent_encode(digest))
    }

    /// Sends `body` to an upload: the whole blob with `PUT ?digest=`, or one chunk with
    /// `PATCH` and `Content-Range`. Returns the
    /// next upload URL (a `PATCH`) or `None` (the blob is committed). Not retried here:
    /// the caller asks the registry where the upload stands ([`Registry::upload_offset`]).
    pub async fn send_upload(
        &self,
        repo: &str,
        location: &str,
        digest: &str,
        piece: Piece,
        body: Body,
    ) -> Result<Option<String>> {
        let Piece { start, len, whole } = piece;
        let (method, url) = if whole {
            (Method::PUT, Self::with_digest(location, digest))
        } else {
            (Method::PATCH, location.to_string())
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if method == Method::PATCH && len > 0 {
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("{start}-{}", start + len - 1)).expect("ascii"),
            );
        }
        let what = format!("uploading blob {digest} to {}/{repo}", self.host);
        let resp = self
            .raw(method.clone(), &url, &h, body, self.auth_header(repo))
            .await
            .map_err(|e| RegistryError::new(format!("{what}: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.fail(&what, resp).await);
        }
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| self.absolute(l));
        drain(resp).await;
        if method == Method::PUT {
            return Ok(None);
        }
        Ok(Some(loc.unwrap_or_else(|| location.to_string())))
    }

    /// Commits a chunked upload (`PUT ?digest=` with no body).
    pub async fn finish_upload(&self, repo: &str, location: &str, digest: &str) -> Result<()> {
        let url = Self::with_digest(location, digest);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let resp = self
            .send(repo, Method::PUT, &url, h, Some(Bytes::new()))
            .await?;
        self.done(resp, || {
            format!("committing blob {digest} in {}/{repo}", self.host)
        })
        .await
    }

    /// Asks an upload where it stands: the next URL and the number of bytes the registry
    /// holds. `None` when the registry no longer knows the upload.
    pub async fn upload_offset(&self, repo: &str, location: &str) -> Result<Option<(String, u64)>> {
        let resp = self
            .send(repo, Method::GET, location, HeaderMap::new(), None)
            .await?;
        if resp.status() != StatusCode::NO_CONTENT && !resp.status().is_success() {
            drain(resp).await;
            return Ok(None);
        }
        let h = resp.headers();
        let offset = h
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.split_once('-'))
            .and_then(|(_, end)| end.parse::<u64>().ok())
            .map(|end| end + 1)
            .unwrap_or(0);
        let loc = h
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| self.absolute(l))
            .unwrap_or_else(|| location.to_string());
        drain(resp).await;
        Ok(Some((loc, offset)))
    }

    /// Abandons an upload (best effort).
    pub async fn cancel_upload(&self, repo: &str, location: &str) {
        if let Ok(r) = self
            .raw(
                Method::DELETE,
                location,
                &HeaderMap::new(),
                empty(),
                self.auth_header(repo),
            )
            .await
        {
            drain(r).await;
        }
    }

    /// `PUT` a manifest under `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<()> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(media_type)
                .map_err(|_| RegistryError::new(format!("unusable media type `{media_type}`")))?,
        );
        let len = bytes.len() as u64;
        let resp = self.send(repo, Method::PUT, &url, h, Some(bytes)).await?;
        if resp.status().is_success() {
            self.stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
        }
        self.done(resp, || {
            format!("PUT manifest {}/{repo}:{reference}", self.host)
        })
        .await
    }
}

async fn drain(resp: http::Response<Incoming>) {
    let _ = resp.into_body().collect().await;
}

fn backoff(attempt: u32) -> Duration {
    let ms = 200u64.saturating_mul(1 << attempt.min(5)).min(5_000);
    Duration::from_millis(ms)
}

/// The longest wait a `Retry-After` is honoured for.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// `Retry-After` as the wait before the next attempt (capped at a minute).
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    h.get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after_value(v, chrono::Utc::now()))
}

/// A `Retry-After` value (RFC 9110 §10.2.3) read at `now`: delay-seconds, or an HTTP-date
/// (a date already past means no wait), capped at [`RETRY_AFTER_CAP`].
fn retry_after_value(v: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = v.trim();
    let wait = match v.parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => (http_date(v)? - now).to_std().unwrap_or(Duration::ZERO),
    };
    Some(wait.min(RETRY_AFTER_CAP))
}

/// An HTTP-date (RFC 9110 §5.6.7): the IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, and the
/// obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37
/// 1994`) forms a recipient must also accept. Always UTC.
fn http_date(v: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{NaiveDateTime, TimeZone as _, Utc};
    if let Ok(d) = chrono::DateTime::parse_from_rfc2822(v) {
        return Some(d.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(v, "%A, %d-%b-%y %H:%M:%S GMT")
        .or_else(|_| NaiveDateTime::parse_from_str(v, "%a %b %e %H:%M:%S %Y"))
        .ok()?;
    Some(Utc.from_utc_datetime(&naive))
}

/// `errors[0].code: message` of a distribution error body.
fn registry_error_text(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Es {
        errors: Vec<E>,
    }
    let es: Es = serde_json::from_slice(body).ok()?;
    let e = es.errors.first()?;
    Some(match (&e.code, &e.message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => return None,
    })
}

/// What a streamed upload body reports: bytes as they go, and whether the store's bytes
/// turned out not to match their digest.
#[derive(Clone)]
pub struct BodyWatch {
    pub hasher: Arc<Mutex<Sha256>>,
    pub corrupt: Arc<std::sync::atomic::AtomicBool>,
    pub on_sent: Arc<dyn Fn(u64) + Send + Sync>,
}

/// A body streaming `len` bytes of `reader` (read on a blocking thread), feeding the
/// watch's hasher. With `expect`, the body fails at its end when the hash differs (and
/// sets `corrupt`), so the registry never commits corrupt bytes.
pub fn reader_body(
    mut reader: Box<dyn Read + Send>,
    len: u64,
    watch: BodyWatch,
    expect: Option<String>,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let hasher = watch.hasher.clone();
    let corrupt = watch.corrupt.clone();
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        let mut buf = vec![0u8; 256 * 1024];
        while left > 0 {
            let n = (buf.len() as u64).min(left) as usize;
            match reader.read(&mut buf[..n]) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the blob ended {left} bytes early"),
                    )));
                    return;
                }
                Ok(n) => {
                    hasher
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .update(&buf[..n]);
                    left -= n as u64;
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        if let Some(want) = expect {
            let got = format!(
                "sha256:{}",
                hex::encode(
                    hasher
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone()
                        .finalize()
                )
            );
            if got != want {
                corrupt.store(true, Ordering::SeqCst);
                let _ = tx.blocking_send(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob {want} in the store is corrupt (its bytes hash to {got})"),
                )));
            }
        }
    });
    let on_sent = watch.on_sent.clone();
    let stream = futures::stream::unfold(rx, move |mut rx| {
        let on_sent = on_sent.clone();
        async move {
            let item = rx.recv().await?;
            if let Ok(b) = &item {
                on_sent(b.len() as u64);
            }
            Some((item.map(Frame::data), rx))
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

// ----- credentials from the Docker / containers auth files -----

/// The auth files looked at, in order: `$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json`, `$DOCKER_CONFIG/config.json`,
/// `~/.docker/config.json`.
pub fn auth_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        v.push(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_RUNTIME_DIR") {
        v.push(PathBuf::from(p).join("containers/auth.json"));
    }
    if let Some(p) = std::env::var_os("DOCKER_CONFIG") {
        v.push(PathBuf::from(p).join("config.json"));
    } else if let Some(h) = std::env::var_os("HOME") {
        v.push(PathBuf::from(h).join(".docker/config.json"));
    }
    v
}

/// The credentials the auth files hold for `registry` (`docker.io` matches Docker Hub's
/// historical keys too).
pub fn credentials_for(registry: &str) -> Option<Credentials> {
    auth_files()
        .into_iter()
        .find_map(|p| credentials_in(&std::fs::read(p).ok()?, registry))
}

fn credentials_in(file: &[u8], registry: &str) -> Option<Credentials> {
    let v: serde_json::Value = serde_json::from_slice(file).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let wanted: Vec<String> = if registry == super::reference::DOCKER_HUB
        || registry == super::reference::DOCKER_HUB_API
    {
        vec![
            "docker.io".into(),
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![registry.to_string()]
    };
    for (key, entry) in auths {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host_only = host.split('/').next().unwrap_or(host);
        if !wanted
            .iter()
            .any(|w| w == key || w == host || w == host_only)
        {
            continue;
        }
        if let Some(a) = entry.get("auth").and_then(|a| a.as_str()) {
            let raw = base64::engine::general_purpose::STANDARD.decode(a).ok()?;
            let s = String::from_utf8(raw).ok()?;
            let (u, p) = s.split_once(':')?;
            return Some(Credentials {
                username: u.into(),
                password: p.into(),
            });
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(|x| x.as_str()),
            entry.get("password").and_then(|x| x.as_str()),
        ) {
            return Some(Credentials {
                username: u.into(),
                password: p.into(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn reads_credentials_from_auth_files() {
        let file = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
            "reg.example:5000":{"username":"a","password":"b"}}}"#;
        let c = credentials_in(file, "docker.io").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("user", "pass"));
        let c = credentials_in(file, "reg.example:5000").unwrap();
        assert_eq!(c.password, "b");
        assert!(credentials_in(file, "quay.io").is_none());
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials {
            username: "rancher".into(),
            password: "s3cret-pw".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret-pw"));
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
    }

    #[test]
    fn retry_after_reads_an_http_date_in_every_form_and_caps_it() {
        let now = chrono::DateTime::parse_from_rfc3339("1994-11-06T08:49:07Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let at = |v: &str| retry_after_value(v, now);
        // IMF-fixdate, 30 s after now
        assert_eq!(
            at("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::from_secs(30))
        );
        // the obsolete forms RFC 9110 still asks recipients to read
        assert_eq!(
            at("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            at("Sun Nov  6 08:49:37 1994"),
            Some(Duration::from_secs(30))
        );
        // an hour ahead: capped as seconds are; a date already past: no wait
        assert_eq!(at("Sun, 06 Nov 1994 09:49:07 GMT"), Some(RETRY_AFTER_CAP));
        assert_eq!(at("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        // seconds still, and what is neither is ignored (the backoff applies)
        assert_eq!(at(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(at("soon"), None);
        assert_eq!(at("-5"), None);
        // through the header
        let mut h = HeaderMap::new();
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Fri, 31 Dec 9999 23:59:59 GMT"),
        );
        assert_eq!(retry_after(&h), Some(RETRY_AFTER_CAP));
    }

    #[test]
    fn error_bodies_are_summarised() {
        let b = br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#;
        assert_eq!(
            registry_error_text(b).as_deref(),
            Some("MANIFEST_BLOB_UNKNOWN: blob unknown to registry")
        );
    }
}
