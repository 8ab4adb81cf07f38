//! The private registry's PKI and password, kept in `state/<env>/secrets/`.
//!
//! Generated once, then loaded: the registry host's and the nodes' user-data embed these
//! values, and user-data that changed between runs would replace the instances. Root
//! secrets (the CA key pair, the password) are never regenerated silently; derived ones
//! (the server certificate, the htpasswd entry) are re-derived when they no longer fit.

use std::fmt;
use std::path::Path;

use rand::distr::{Alphanumeric, SampleString};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::files::{
    ensure_private_dir, read_optional, set_mode, write_atomic, PUBLIC_MODE, SECRET_MODE,
};
use super::RenderError;

/// The one registry user the tool creates.
pub const REGISTRY_USERNAME: &str = "rancher";

/// Every file of the secrets folder and its mode: what the S3 backend's shared secret
/// carries (see `secrets_bundle`).
pub(super) const FILES: &[(&str, u32)] = &[
    (CA_CERT_FILE, PUBLIC_MODE),
    (CA_KEY_FILE, SECRET_MODE),
    (SERVER_CERT_FILE, PUBLIC_MODE),
    (SERVER_KEY_FILE, SECRET_MODE),
    (PASSWORD_FILE, SECRET_MODE),
    (HTPASSWD_FILE, SECRET_MODE),
    (CLUSTER_TOKEN_FILE, SECRET_MODE),
];

const CA_CERT_FILE: &str = "registry-ca.crt";
const CA_KEY_FILE: &str = "registry-ca.key";
const SERVER_CERT_FILE: &str = "registry.crt";
const SERVER_KEY_FILE: &str = "registry.key";
const PASSWORD_FILE: &str = "registry-password";
const HTPASSWD_FILE: &str = "registry-htpasswd";
/// SHA-256 of the password and the htpasswd line once bcrypt said they fit: later runs
/// compare that instead of running bcrypt (~60 ms at cost 10) before every command. It
/// sits beside the password itself (0600) and tells nothing the password does not.
const HTPASSWD_CHECKED_FILE: &str = "registry-htpasswd.checked";

const PASSWORD_LENGTH: usize = 32;
/// Cost of the htpasswd entry: what `htpasswd -B` uses; the registry checks it on every
/// request, so higher costs slow every image pull.
const BCRYPT_COST: u32 = 10;
const CA_VALIDITY_YEARS: i32 = 10;
const SERVER_VALIDITY_YEARS: i32 = 2;
/// A server certificate closer than this to its end is due for renewal (which the operator
/// asks for: renewing changes the registry host's user-data, so it replaces the host).
const RENEW_BEFORE_SECONDS: i64 = 30 * 24 * 3600;

/// The registry's certificates, keys and credentials, all PEM or plain text.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrySecrets {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// Always [`REGISTRY_USERNAME`].
    pub username: String,
    pub password: String,
    /// `rancher:$2y$10$...`, without a newline.
    pub htpasswd_line: String,
    /// When the server certificate ends (Unix seconds).
    pub server_cert_not_after: i64,
}

impl RegistrySecrets {
    /// The server certificate ends within 30 days (or has ended): time to renew it with
    /// `provision apply --renew-registry-cert`.
    pub fn renewal_due(&self) -> bool {
        self.server_cert_not_after <= chrono::Utc::now().timestamp() + RENEW_BEFORE_SECONDS
    }

    /// The end of the server certificate, as `2026-11-25`.
    pub fn server_cert_expiry(&self) -> String {
        chrono::DateTime::from_timestamp(self.server_cert_not_after, 0)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| self.server_cert_not_after.to_string())
    }
}

impl fmt::Debug for RegistrySecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrySecrets")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("ca_key_pem", &"<redacted>")
            .field("server_cert_pem", &self.server_cert_pem)
            .field("server_key_pem", &"<redacted>")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("htpasswd_line", &"<redacted>")
            .field("server_cert_not_after", &self.server_cert_not_after)
            .finish()
    }
}

/// Loads the registry secrets from `dir` (`state/<env>/secrets/`), generating what is
/// missing: on the first call everything, later only derived values that no longer fit.
///
/// - `dir` is created with mode 0700 (parents too, when missing).
/// - CA: ECDSA P-256, `CN=provision <env> registry CA` (`<env>` is the name of `dir`'s
///   parent), valid 10 years. `registry-ca.crt` is 0644, every other file 0600.
/// - Server certificate: SAN `registry_dns_name`, valid 2 years, signed by the CA. It is
///   re-issued, keeping its key, when it lacks that name, is not signed by the CA or does
///   not match its key. Its age alone never re-issues it: a new certificate changes the
///   registry host's user-data and so replaces the host, which the operator asks for with
///   `renew` (`apply --renew-registry-cert`; [`RegistrySecrets::renewal_due`] says when).
/// - Password: 32 alphanumeric characters; the htpasswd entry is its bcrypt (`$2y$`).
///
/// A CA certificate without its key, or an htpasswd file without the password, is an
/// error rather than a reason to start over: replacing them would lock out every node.
pub fn ensure_registry_secrets(
    dir: &Path,
    registry_dns_name: &str,
) -> Result<RegistrySecrets, RenderError> {
    ensure_registry_secrets_renewing(dir, registry_dns_name, false)
}

/// [`ensure_registry_secrets`], re-issuing the server certificate when `renew` is set.
pub fn ensure_registry_secrets_renewing(
    dir: &Path,
    registry_dns_name: &str,
    renew: bool,
) -> Result<RegistrySecrets, RenderError> {
    ensure_private_dir(dir)?;
    let (ca_cert_pem, ca_key_pem, ca_key) = ensure_ca(dir)?;
    let (server_cert_pem, server_key_pem) =
        ensure_server_cert(dir, registry_dns_name, &ca_cert_pem, &ca_key, renew)?;
    let server_cert_not_after = pem_to_der(&server_cert_pem)
        .and_then(|der| parse_der(&der).map(|c| c.validity().not_after.timestamp()))
        .unwrap_or_default();
    let password = ensure_password(dir)?;
    let htpasswd_line = ensure_htpasswd(dir, &password)?;
    Ok(RegistrySecrets {
        ca_cert_pem,
        ca_key_pem,
        server_cert_pem,
        server_key_pem,
        username: REGISTRY_USERNAME.to_string(),
        password,
        htpasswd_line,
        server_cert_not_after,
    })
}

fn ensure_ca(dir: &Path) -> Result<(String, String, KeyPair), RenderError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    let existing_cert = read_optional(&cert_path)?;
    let existing_key = read_optional(&key_path)?;

    let (key_pem, key) = match existing_key {
        Some(key_pem) => {
            let key = parse_key(&key_path, &key_pem)?;
            set_mode(&key_path, SECRET_MODE)?;
            (key_pem, key)
        }
        None if existing_cert.is_some() => {
            return Err(RenderError::InvalidSecret {
                path: key_path,
                reason: format!(
                    "it is missing while {CA_CERT_FILE} exists; restore it, or delete both \
                     to create a new CA (the registry host and every node must then be \
                     replaced)"
                ),
            });
        }
        None => {
            let key = generate_key(CA_KEY_FILE)?;
            let key_pem = key.serialize_pem();
            write_atomic(&key_path, key_pem.as_bytes(), SECRET_MODE)?;
            (key_pem, key)
        }
    };

    let cert_pem = match existing_cert {
        Some(cert_pem) => {
            check_ca_cert(&cert_path, &cert_pem, &key)?;
            set_mode(&cert_path, PUBLIC_MODE)?;
            cert_pem
        }
        None => {
            // A first run, or a run interrupted between the key and the certificate.
            // Same key and name: anything the key already signed stays valid.
            let cert_pem = ca_params(dir)
                .self_signed(&key)
                .map_err(|source| RenderError::Certificate {
                    file: CA_CERT_FILE,
                    source,
                })?
                .pem();
            write_atomic(&cert_path, cert_pem.as_bytes(), PUBLIC_MODE)?;
            cert_pem
        }
    };
    Ok((cert_pem, key_pem, key))
}

fn ca_params(dir: &Path) -> CertificateParams {
    let env = dir
        .parent()
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "default".to_string());
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("provision {env} registry CA"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "provision");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    set_validity(&mut params, CA_VALIDITY_YEARS);
    params
}

fn check_ca_cert(path: &Path, pem: &str, key: &KeyPair) -> Result<(), RenderError> {
    let invalid = |reason: &str| RenderError::InvalidSecret {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let der = pem_to_der(pem).ok_or_else(|| invalid("it is not a PEM certificate"))?;
    let cert = parse_der(&der).ok_or_else(|| invalid("it is not an X.509 certificate"))?;
    if !cert.is_ca() {
        return Err(invalid("it is not a CA certificate"));
    }
    if !key_matches(&cert, key) {
        return Err(invalid(&format!(
            "it does not belong to the key in {CA_KEY_FILE}"
        )));
    }
    Ok(())
}

fn ensure_server_cert(
    dir: &Path,
    dns_name: &str,
    ca_cert_pem: &str,
    ca_key: &KeyPair,
    renew: bool,
) -> Result<(String, String), RenderError> {
    let cert_path = dir.join(SERVER_CERT_FILE);
    let key_path = dir.join(SERVER_KEY_FILE);
    let existing_key = read_optional(&key_path)?
        .and_then(|pem| KeyPair::from_pem(&pem).ok().map(|key| (pem, key)));
    let existing_cert = read_optional(&cert_path)?;

    if let (Some((key_pem, key)), Some(cert_pem)) = (&existing_key, &existing_cert) {
        if !renew && server_cert_fits(cert_pem, key, dns_name, ca_cert_pem) {
            set_mode(&key_path, SECRET_MODE)?;
            set_mode(&cert_path, SECRET_MODE)?;
            return Ok((cert_pem.clone(), key_pem.clone()));
        }
    }

    let (key_pem, key) = match existing_key {
        Some(pair) => {
            set_mode(&key_path, SECRET_MODE)?;
            pair
        }
        None => {
            let key = generate_key(SERVER_KEY_FILE)?;
            let key_pem = key.serialize_pem();
            write_atomic(&key_path, key_pem.as_bytes(), SECRET_MODE)?;
            (key_pem, key)
        }
    };
    let certificate_error = |source| RenderError::Certificate {
        file: SERVER_CERT_FILE,
        source,
    };
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(certificate_error)?;
    let mut params =
        CertificateParams::new(vec![dns_name.to_string()]).map_err(certificate_error)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, dns_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    set_validity(&mut params, SERVER_VALIDITY_YEARS);
    let cert_pem = params
        .signed_by(&key, &issuer)
        .map_err(certificate_error)?
        .pem();
    write_atomic(&cert_path, cert_pem.as_bytes(), SECRET_MODE)?;
    Ok((cert_pem, key_pem))
}

/// Whether the stored server certificate can stay: it names `dns_name`, belongs to `key`
/// and is signed by the CA. (Expiry is the operator's call: see `renewal_due`.)
fn server_cert_fits(cert_pem: &str, key: &KeyPair, dns_name: &str, ca_cert_pem: &str) -> bool {
    let (Some(cert_der), Some(ca_der)) = (pem_to_der(cert_pem), pem_to_der(ca_cert_pem)) else {
        return false;
    };
    let (Some(cert), Some(ca)) = (parse_der(&cert_der), parse_der(&ca_der)) else {
        return false;
    };
    key_matches(&cert, key)
        && cert.verify_signature(Some(ca.public_key())).is_ok()
        && names_contain(&cert, dns_name)
}

fn names_contain(cert: &X509Certificate<'_>, name: &str) -> bool {
    let wanted_ip: Option<std::net::IpAddr> = name.parse().ok();
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|general| match general {
        GeneralName::DNSName(dns) => dns.eq_ignore_ascii_case(name),
        GeneralName::IPAddress(bytes) => match wanted_ip {
            Some(std::net::IpAddr::V4(ip)) => *bytes == ip.octets(),
            Some(std::net::IpAddr::V6(ip)) => *bytes == ip.octets(),
            None => false,
        },
        _ => false,
    })
}

fn key_matches(cert: &X509Certificate<'_>, key: &KeyPair) -> bool {
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

/// The file holding the cluster token of RKE2 and K3s embedded-etcd servers.
pub const CLUSTER_TOKEN_FILE: &str = "cluster-token";
const CLUSTER_TOKEN_LENGTH: usize = 48;

/// The token every server of the cluster shares (RKE2 `token`, K3s `K3S_TOKEN`): generated
/// once into `dir/cluster-token` (0600, the folder 0700), then read back. Never in the
/// state: only the artifacts, written when the operator asks for them, carry it. A file
/// that does not hold one token on one line is an error, never replaced (the running
/// cluster keeps the token it was installed with).
pub fn ensure_cluster_token(dir: &Path) -> Result<String, RenderError> {
    ensure_private_dir(dir)?;
    let path = dir.join(CLUSTER_TOKEN_FILE);
    match read_optional(&path)? {
        Some(text) => {
            let token = text.trim_end_matches(['\n', '\r']).to_string();
            if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(RenderError::InvalidSecret {
                    path,
                    reason: "it must hold one token on one line, without spaces (the servers \
                             keep the token they were installed with: restore it from a \
                             server's config.yaml)"
                        .to_string(),
                });
            }
            set_mode(&path, SECRET_MODE)?;
            Ok(token)
        }
        None => {
            let token = Alphanumeric.sample_string(&mut rand::rng(), CLUSTER_TOKEN_LENGTH);
            write_atomic(&path, format!("{token}\n").as_bytes(), SECRET_MODE)?;
            Ok(token)
        }
    }
}

fn ensure_password(dir: &Path) -> Result<String, RenderError> {
    let path = dir.join(PASSWORD_FILE);
    match read_optional(&path)? {
        Some(text) => {
            let password = text.trim_end_matches(['\n', '\r']).to_string();
            if password.is_empty() || password.contains(['\n', ':']) {
                return Err(RenderError::InvalidSecret {
                    path,
                    reason: "it must hold one password on one line, without ':'".to_string(),
                });
            }
            set_mode(&path, SECRET_MODE)?;
            Ok(password)
        }
        None if dir.join(HTPASSWD_FILE).exists() => Err(RenderError::InvalidSecret {
            path,
            reason: format!(
                "it is missing while {HTPASSWD_FILE} exists; restore it, or delete \
                 {HTPASSWD_FILE} to create a new password (the registry host and every node \
                 must then be replaced)"
            ),
        }),
        None => {
            let password = Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LENGTH);
            write_atomic(&path, format!("{password}\n").as_bytes(), SECRET_MODE)?;
            Ok(password)
        }
    }
}

/// The stamp of a password and the htpasswd line that bcrypt found fitting.
fn htpasswd_stamp(password: &str, line: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(password.as_bytes());
    h.update(b"\n");
    h.update(line.as_bytes());
    format!("{}\n", hex::encode(h.finalize()))
}

fn ensure_htpasswd(dir: &Path, password: &str) -> Result<String, RenderError> {
    let path = dir.join(HTPASSWD_FILE);
    let checked = dir.join(HTPASSWD_CHECKED_FILE);
    if let Some(text) = read_optional(&path)? {
        let line = text.lines().next().unwrap_or_default();
        let stamp = htpasswd_stamp(password, line);
        // Checked before, and neither file changed since: no bcrypt.
        if read_optional(&checked)?.is_some_and(|s| s == stamp) {
            set_mode(&path, SECRET_MODE)?;
            return Ok(line.to_string());
        }
        let fits = line
            .strip_prefix(REGISTRY_USERNAME)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false));
        if fits {
            set_mode(&path, SECRET_MODE)?;
            write_atomic(&checked, stamp.as_bytes(), SECRET_MODE)?;
            return Ok(line.to_string());
        }
    }
    let hash =
        bcrypt::hash_with_result(password, BCRYPT_COST).map_err(|source| RenderError::Bcrypt {
            file: HTPASSWD_FILE,
            source,
        })?;
    let line = format!(
        "{REGISTRY_USERNAME}:{}",
        hash.format_for_version(bcrypt::Version::TwoY)
    );
    write_atomic(&path, format!("{line}\n").as_bytes(), SECRET_MODE)?;
    write_atomic(
        &checked,
        htpasswd_stamp(password, &line).as_bytes(),
        SECRET_MODE,
    )?;
    Ok(line)
}

fn generate_key(file: &'static str) -> Result<KeyPair, RenderError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|source| RenderError::Certificate { file, source })
}

fn parse_key(path: &Path, pem: &str) -> Result<KeyPair, RenderError> {
    KeyPair::from_pem(pem).map_err(|error| RenderError::InvalidSecret {
        path: path.to_path_buf(),
        reason: format!("it is not a usable private key ({error})"),
    })
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    (parsed.label == "CERTIFICATE").then_some(parsed.contents)
}

fn parse_der(der: &[u8]) -> Option<X509Certificate<'_>> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, cert)| cert)
}

/// Valid from yesterday (tolerates clock skew) for `years` years.
fn set_validity(params: &mut CertificateParams, years: i32) {
    use chrono::Datelike;
    let start = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    // Day 28 at most, so that `years` later is a real date (no 29 February issue).
    let (month, day) = (start.month() as u8, start.day().min(28) as u8);
    params.not_before = rcgen::date_time_ymd(start.year(), month, day);
    params.not_after = rcgen::date_time_ymd(start.year() + years, month, day);
}

/// 16 random bytes, the top bit cleared so the DER integer stays positive.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::super::files::test_support::mode_of;
    use super::*;

    fn secrets_dir(root: &Path) -> std::path::PathBuf {
        root.join("lab").join("secrets")
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    fn parsed(pem: &str) -> (Vec<u8>, String, Vec<String>, bool) {
        let der = pem_to_der(pem).unwrap();
        let cert = parse_der(&der).unwrap();
        let names = match cert.subject_alternative_name().unwrap() {
            Some(san) => san
                .value
                .general_names
                .iter()
                .map(|name| name.to_string())
                .collect(),
            None => Vec::new(),
        };
        let subject = cert.subject().to_string();
        let is_ca = cert.is_ca();
        (der.clone(), subject, names, is_ca)
    }

    #[test]
    fn first_call_generates_everything_with_modes() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        let secrets = ensure_registry_secrets(&dir, "lab-registry.lab.example.com").unwrap();

        assert_eq!(mode_of(&dir), 0o700);
        assert_eq!(mode_of(&dir.join(CA_CERT_FILE)), 0o644);
        for file in [
            CA_KEY_FILE,
            SERVER_CERT_FILE,
            SERVER_KEY_FILE,
            PASSWORD_FILE,
            HTPASSWD_FILE,
        ] {
            assert_eq!(mode_of(&dir.join(file)), 0o600, "{file}");
        }

        assert_eq!(secrets.username, "rancher");
        assert_eq!(secrets.password.len(), 32);
        assert!(secrets.password.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(read(&dir, PASSWORD_FILE), format!("{}\n", secrets.password));
        assert_eq!(read(&dir, CA_CERT_FILE), secrets.ca_cert_pem);
        assert_eq!(read(&dir, SERVER_KEY_FILE), secrets.server_key_pem);

        let (_, ca_subject, _, ca_is_ca) = parsed(&secrets.ca_cert_pem);
        assert!(ca_is_ca);
        assert!(
            ca_subject.contains("CN=provision lab registry CA"),
            "{ca_subject}"
        );
        let (_, _, names, server_is_ca) = parsed(&secrets.server_cert_pem);
        assert!(!server_is_ca);
        assert_eq!(names, vec!["DNSName(lab-registry.lab.example.com)"]);
        assert!(server_cert_fits(
            &secrets.server_cert_pem,
            &KeyPair::from_pem(&secrets.server_key_pem).unwrap(),
            "lab-registry.lab.example.com",
            &secrets.ca_cert_pem,
        ));
    }

    #[test]
    fn htpasswd_is_bcrypt_2y_of_the_password() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        let secrets = ensure_registry_secrets(&dir, "registry.example").unwrap();
        let hash = secrets.htpasswd_line.strip_prefix("rancher:").unwrap();
        assert!(hash.starts_with("$2y$10$"), "{hash}");
        assert!(bcrypt::verify(&secrets.password, hash).unwrap());
        assert!(!bcrypt::verify("not the password", hash).unwrap());
        assert_eq!(
            read(&dir, HTPASSWD_FILE),
            format!("{}\n", secrets.htpasswd_line)
        );
    }

    #[test]
    fn second_call_loads_the_same_secrets() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        let first = ensure_registry_secrets(&dir, "registry.example").unwrap();
        let second = ensure_registry_secrets(&dir, "registry.example").unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn new_dns_name_reissues_only_the_server_certificate() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        let first = ensure_registry_secrets(&dir, "old.example").unwrap();
        let second = ensure_registry_secrets(&dir, "new.example").unwrap();

        assert_ne!(first.server_cert_pem, second.server_cert_pem);
        assert_eq!(first.server_key_pem, second.server_key_pem);
        assert_eq!(first.ca_cert_pem, second.ca_cert_pem);
        assert_eq!(first.ca_key_pem, second.ca_key_pem);
        assert_eq!(first.password, second.password);
        assert_eq!(first.htpasswd_line, second.htpasswd_line);

        let (_, _, names, _) = parsed(&second.server_cert_pem);
        assert_eq!(names, vec!["DNSName(new.example)"]);
        let key = KeyPair::from_pem(&second.server_key_pem).unwrap();
        assert!(server_cert_fits(
            &second.server_cert_pem,
            &key,
            "new.example",
            &second.ca_cert_pem
        ));
        // The name match ignores case, as DNS does.
        assert_eq!(
            ensure_registry_secrets(&dir, "NEW.example").unwrap(),
            second
        );
    }

    #[test]
    fn ip_address_names_are_supported() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        let first = ensure_registry_secrets(&dir, "10.0.0.5").unwrap();
        let (_, _, names, _) = parsed(&first.server_cert_pem);
        // x509-parser shows IP addresses in hex.
        assert_eq!(names, vec!["IPAddress(0a:00:00:05)"]);
        assert_eq!(ensure_registry_secrets(&dir, "10.0.0.5").unwrap(), first);
    }

    /// Replace the stored server certificate by one of the same key and CA that ends in
    /// `days` days.
    fn expire_server_cert_in(dir: &Path, days: u64) {
        use chrono::Datelike;
        let ca_pem = std::fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap();
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(dir.join(CA_KEY_FILE)).unwrap()).unwrap();
        let key = KeyPair::from_pem(&std::fs::read_to_string(dir.join(SERVER_KEY_FILE)).unwrap())
            .unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).unwrap();
        let mut params = CertificateParams::new(vec!["registry.example".to_string()]).unwrap();
        set_validity(&mut params, 1);
        let end = chrono::Utc::now().date_naive() + chrono::Days::new(days);
        params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
        let pem = params.signed_by(&key, &issuer).unwrap().pem();
        write_atomic(&dir.join(SERVER_CERT_FILE), pem.as_bytes(), SECRET_MODE).unwrap();
    }

    #[test]
    fn an_expiring_certificate_is_kept_until_the_operator_renews_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        let fresh = ensure_registry_secrets(&dir, "registry.example").unwrap();
        assert!(!fresh.renewal_due());
        expire_server_cert_in(&dir, 10);
        let expiring = ensure_registry_secrets(&dir, "registry.example").unwrap();
        assert_ne!(expiring.server_cert_pem, fresh.server_cert_pem);
        // Not re-issued behind the operator's back: the host would be replaced.
        assert_eq!(
            ensure_registry_secrets(&dir, "registry.example").unwrap(),
            expiring
        );
        assert!(expiring.renewal_due());
        let renewed = ensure_registry_secrets_renewing(&dir, "registry.example", true).unwrap();
        assert_ne!(renewed.server_cert_pem, expiring.server_cert_pem);
        assert_eq!(renewed.server_key_pem, expiring.server_key_pem);
        assert_eq!(renewed.ca_cert_pem, expiring.ca_cert_pem);
        assert!(!renewed.renewal_due());
    }

    #[test]
    fn server_certificate_from_another_ca_is_reissued() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        let other_dir = secrets_dir(&root.path().join("other"));
        let ours = ensure_registry_secrets(&dir, "registry.example").unwrap();
        let theirs = ensure_registry_secrets(&other_dir, "registry.example").unwrap();
        write_atomic(
            &dir.join(SERVER_CERT_FILE),
            theirs.server_cert_pem.as_bytes(),
            SECRET_MODE,
        )
        .unwrap();
        let again = ensure_registry_secrets(&dir, "registry.example").unwrap();
        assert_ne!(again.server_cert_pem, theirs.server_cert_pem);
        assert_eq!(again.server_key_pem, ours.server_key_pem);
        assert_eq!(again.ca_cert_pem, ours.ca_cert_pem);
    }

    #[test]
    fn lost_ca_certificate_is_recreated_from_its_key() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        let first = ensure_registry_secrets(&dir, "registry.example").unwrap();
        std::fs::remove_file(dir.join(CA_CERT_FILE)).unwrap();
        let second = ensure_registry_secrets(&dir, "registry.example").unwrap();
        assert_eq!(second.ca_key_pem, first.ca_key_pem);
        // The old server certificate still verifies against the recreated CA.
        assert_eq!(second.server_cert_pem, first.server_cert_pem);
    }

    #[test]
    fn lost_ca_key_is_an_error_not_a_new_ca() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        ensure_registry_secrets(&dir, "registry.example").unwrap();
        std::fs::remove_file(dir.join(CA_KEY_FILE)).unwrap();
        let error = ensure_registry_secrets(&dir, "registry.example").unwrap_err();
        assert!(
            matches!(error, RenderError::InvalidSecret { .. }),
            "{error}"
        );
        assert!(error.to_string().contains(CA_KEY_FILE), "{error}");
        assert!(!dir.join(CA_KEY_FILE).exists());
    }

    #[test]
    fn lost_password_with_htpasswd_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        ensure_registry_secrets(&dir, "registry.example").unwrap();
        std::fs::remove_file(dir.join(PASSWORD_FILE)).unwrap();
        let error = ensure_registry_secrets(&dir, "registry.example").unwrap_err();
        assert!(error.to_string().contains(PASSWORD_FILE), "{error}");
    }

    #[test]
    fn htpasswd_is_rederived_when_it_does_not_match() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        let first = ensure_registry_secrets(&dir, "registry.example").unwrap();
        write_atomic(&dir.join(PASSWORD_FILE), b"Another1\n", SECRET_MODE).unwrap();
        let second = ensure_registry_secrets(&dir, "registry.example").unwrap();
        assert_eq!(second.password, "Another1");
        assert_ne!(second.htpasswd_line, first.htpasswd_line);
        let hash = second.htpasswd_line.strip_prefix("rancher:").unwrap();
        assert!(bcrypt::verify("Another1", hash).unwrap());
        assert_eq!(second.server_cert_pem, first.server_cert_pem);
    }

    #[test]
    fn a_checked_htpasswd_is_not_checked_again_but_an_edited_one_is() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        let first = ensure_registry_secrets(&dir, "registry.example").unwrap();
        assert_eq!(mode_of(&dir.join(HTPASSWD_CHECKED_FILE)), SECRET_MODE);
        // A line bcrypt would refuse, with a stamp saying it was checked: taken as it is,
        // which shows bcrypt did not run (the stamp is what a real check writes).
        let unchecked = "rancher:$2y$10$notreallyabcryptofthepasswordxxxxxxxxxxxxxxxxxxxxxxxx";
        write_atomic(
            &dir.join(HTPASSWD_FILE),
            format!("{unchecked}\n").as_bytes(),
            SECRET_MODE,
        )
        .unwrap();
        write_atomic(
            &dir.join(HTPASSWD_CHECKED_FILE),
            htpasswd_stamp(&first.password, unchecked).as_bytes(),
            SECRET_MODE,
        )
        .unwrap();
        let again = ensure_registry_secrets(&dir, "registry.example").unwrap();
        assert_eq!(again.htpasswd_line, unchecked);
        // Edited without the stamp following: checked, found wrong, derived again.
        write_atomic(&dir.join(HTPASSWD_CHECKED_FILE), b"stale\n", SECRET_MODE).unwrap();
        let fixed = ensure_registry_secrets(&dir, "registry.example").unwrap();
        let hash = fixed.htpasswd_line.strip_prefix("rancher:").unwrap();
        assert!(bcrypt::verify(&first.password, hash).unwrap());
    }

    #[test]
    fn loose_modes_are_tightened_on_load() {
        let root = tempfile::tempdir().unwrap();
        let dir = secrets_dir(root.path());
        ensure_registry_secrets(&dir, "registry.example").unwrap();
        set_mode(&dir.join(CA_KEY_FILE), 0o644).unwrap();
        set_mode(&dir, 0o755).unwrap();
        ensure_registry_secrets(&dir, "registry.example").unwrap();
        assert_eq!(mode_of(&dir.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode_of(&dir), 0o700);
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let root = tempfile::tempdir().unwrap();
        let secrets = ensure_registry_secrets(&secrets_dir(root.path()), "r.example").unwrap();
        let debug = format!("{secrets:?}");
        assert!(!debug.contains(&secrets.password));
        assert!(!debug.contains(&secrets.ca_key_pem));
        assert!(!debug.contains(&secrets.server_key_pem));
    }

    #[test]
    fn the_cluster_token_is_made_once_private_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("lab/secrets");
        let token = ensure_cluster_token(&secrets).unwrap();
        assert_eq!(token.len(), CLUSTER_TOKEN_LENGTH);
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(mode_of(&secrets.join(CLUSTER_TOKEN_FILE)), SECRET_MODE);
        assert_eq!(mode_of(&secrets), 0o700);
        assert_eq!(
            ensure_cluster_token(&secrets).unwrap(),
            token,
            "read back, not remade"
        );
        std::fs::write(secrets.join(CLUSTER_TOKEN_FILE), "two words\n").unwrap();
        assert!(matches!(
            ensure_cluster_token(&secrets),
            Err(RenderError::InvalidSecret { .. })
        ));
    }
}
