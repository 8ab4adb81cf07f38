//! Can this machine reach AWS at all? One TCP connection to the endpoint (or to the proxy
//! that carries the calls) before the first call of a command, so an unreachable endpoint
//! fails in seconds, named, instead of after a minute of the SDK's silent retries.

use std::time::Duration;

/// How long the probe waits for name resolution and the TCP handshake together.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a service's calls go and why there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The endpoint URL the calls use.
    pub url: String,
    /// Where that URL comes from (`AWS_ENDPOINT_URL`, the region's default, …).
    pub source: String,
    /// The proxy that carries the calls, if one applies: its URL and variable.
    pub proxy: Option<(String, String)>,
}

impl Target {
    /// The endpoint of `service` (the `AWS_ENDPOINT_URL_<SERVICE>` suffix, e.g. `EC2`, and
    /// the host prefix of its default endpoint, e.g. `ec2`) in `region`, from the variables
    /// `var` reads and the shared config's endpoint (`AWS_ENDPOINT_URL` or a profile's
    /// `endpoint_url`).
    pub fn resolve(
        service_env: &str,
        service_host: &str,
        region: &str,
        shared_endpoint: Option<&str>,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let specific = format!("AWS_ENDPOINT_URL_{service_env}");
        let (url, source) = if let Some(url) = var(&specific).filter(|v| !v.is_empty()) {
            (url, specific)
        } else if let Some(url) = shared_endpoint {
            let source = if var("AWS_ENDPOINT_URL").as_deref() == Some(url) {
                "AWS_ENDPOINT_URL".to_string()
            } else {
                "the AWS profile's endpoint_url".to_string()
            };
            (url.to_string(), source)
        } else {
            let suffix = if region.starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            (
                format!("https://{service_host}.{region}.{suffix}"),
                format!("the default endpoint of region {region}"),
            )
        };
        let proxy = proxy_for(&url, var);
        Target { url, source, proxy }
    }

    /// `host:port` to connect to: the proxy's when one applies, else the endpoint's.
    fn address(&self) -> Option<String> {
        host_port(self.proxy.as_ref().map_or(&self.url, |(url, _)| url))
    }

    /// Connect once; an error names the endpoint, where it comes from, what failed and the
    /// likely causes.
    pub async fn probe(&self, limit: Duration) -> Result<(), String> {
        let Some(address) = self.address() else {
            return Err(format!(
                "the AWS endpoint {} (from {}) is not a URL such as https://host[:port]",
                self.url, self.source
            ));
        };
        let failure =
            match tokio::time::timeout(limit, tokio::net::TcpStream::connect(&address)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {} s", limit.as_secs()),
            };
        let via = match &self.proxy {
            Some((proxy, variable)) => format!(" through the proxy {proxy} (from {variable})"),
            None => String::new(),
        };
        Err(format!(
            "cannot reach the AWS endpoint {} (from {}){via}: {failure} ({address}). Likely \
             causes: no network route to it from this machine (offline, a VPN that is down, \
             a firewall), a proxy this network needs (set HTTPS_PROXY, and NO_PROXY for hosts \
             reached directly){}",
            self.url,
            self.source,
            if self.source.starts_with("AWS_ENDPOINT_URL") {
                format!(
                    ", or {} pointing at a server that is not running",
                    self.source
                )
            } else {
                ", or AWS_ENDPOINT_URL set to the wrong address".to_string()
            }
        ))
    }
}

/// `host:port` of a URL (`https` defaults to 443, `http` to 80).
fn host_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority.is_empty() {
        return None;
    }
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        return Some(authority.to_string());
    }
    let port = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    Some(format!("{authority}:{port}"))
}

/// The proxy the SDK's client uses for `url` (`HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`, any
/// case), unless `NO_PROXY` names its host.
fn proxy_for(url: &str, var: &dyn Fn(&str) -> Option<String>) -> Option<(String, String)> {
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| var(n).filter(|v| !v.is_empty()).map(|v| (v, n.to_string())))
    };
    let https = url.starts_with("https://");
    let proxy = if https {
        first(&["HTTPS_PROXY", "https_proxy"])
    } else {
        first(&["HTTP_PROXY", "http_proxy"])
    }
    .or_else(|| first(&["ALL_PROXY", "all_proxy"]))?;
    let host = host_port(url)?;
    let host = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(h, _)| h)
        .trim_matches(['[', ']'])
        .to_string();
    let no_proxy = first(&["NO_PROXY", "no_proxy"])
        .map(|(v, _)| v)
        .unwrap_or_default();
    let bypassed = no_proxy.split(',').map(str::trim).any(|entry| {
        let entry = entry.trim_start_matches("*.").trim_start_matches('.');
        entry == "*"
            || (!entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}"))))
    });
    (!bypassed).then_some(proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_endpoint_comes_from_the_service_variable_then_the_shared_one_then_the_region() {
        let env = vars(&[
            ("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:4566"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ]);
        let t = Target::resolve(
            "EC2",
            "ec2",
            "us-east-1",
            Some("http://127.0.0.1:5000"),
            &env,
        );
        assert_eq!(t.url, "http://127.0.0.1:4566");
        assert_eq!(t.source, "AWS_ENDPOINT_URL_EC2");
        let env = vars(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]);
        let t = Target::resolve(
            "EC2",
            "ec2",
            "us-east-1",
            Some("http://127.0.0.1:5000"),
            &env,
        );
        assert_eq!(t.source, "AWS_ENDPOINT_URL");
        let t = Target::resolve("EC2", "ec2", "eu-west-3", None, &vars(&[]));
        assert_eq!(t.url, "https://ec2.eu-west-3.amazonaws.com");
        assert_eq!(
            t.address().as_deref(),
            Some("ec2.eu-west-3.amazonaws.com:443")
        );
        let t = Target::resolve("EC2", "ec2", "cn-north-1", None, &vars(&[]));
        assert_eq!(t.url, "https://ec2.cn-north-1.amazonaws.com.cn");
    }

    #[test]
    fn a_proxy_carries_the_calls_unless_no_proxy_names_the_host() {
        let env = vars(&[("HTTPS_PROXY", "http://proxy.corp:3128")]);
        let t = Target::resolve("EC2", "ec2", "us-east-1", None, &env);
        assert_eq!(
            t.proxy,
            Some((
                "http://proxy.corp:3128".to_string(),
                "HTTPS_PROXY".to_string()
            ))
        );
        assert_eq!(t.address().as_deref(), Some("proxy.corp:3128"));
        let env = vars(&[
            ("https_proxy", "http://proxy.corp:3128"),
            ("NO_PROXY", "localhost,.amazonaws.com"),
        ]);
        assert_eq!(
            Target::resolve("EC2", "ec2", "us-east-1", None, &env).proxy,
            None
        );
        // An http endpoint does not go through an https proxy.
        let env = vars(&[("HTTPS_PROXY", "http://proxy.corp:3128")]);
        let t = Target::resolve("EC2", "ec2", "us-east-1", Some("http://127.0.0.1:1"), &env);
        assert_eq!(t.proxy, None);
    }

    #[tokio::test]
    async fn a_closed_port_fails_at_once_naming_the_endpoint_and_the_causes() {
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let env = vars(&[("AWS_ENDPOINT_URL", &url)]);
        let t = Target::resolve("EC2", "ec2", "us-east-1", Some(&url), &env);
        let started = std::time::Instant::now();
        let err = t.probe(PROBE_TIMEOUT).await.unwrap_err();
        assert!(started.elapsed() < PROBE_TIMEOUT, "{:?}", started.elapsed());
        assert!(
            err.contains(&format!(
                "cannot reach the AWS endpoint {url} (from AWS_ENDPOINT_URL)"
            )),
            "{err}"
        );
        assert!(err.contains("refused"), "{err}");
        assert!(err.contains("HTTPS_PROXY"), "{err}");
        assert!(
            err.contains("AWS_ENDPOINT_URL pointing at a server that is not running"),
            "{err}"
        );
        // A listening port passes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let t = Target::resolve("EC2", "ec2", "us-east-1", Some(&url), &vars(&[]));
        t.probe(PROBE_TIMEOUT).await.unwrap();
    }
}
