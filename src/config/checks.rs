//! Pure checks on single values. Each returns the message to show when the value is bad.

use std::net::Ipv4Addr;

use base64::Engine as _;
use ipnet::Ipv4Net;

/// `^[a-z][a-z0-9-]{1,20}$`: it prefixes every cloud name and tag.
pub(crate) fn environment_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if first_ok && rest_ok && (2..=21).contains(&name.len()) {
        Ok(())
    } else {
        Err(format!(
            "must be 2 to 21 characters: a lowercase letter, then lowercase letters, digits \
             or '-' (got {name:?})"
        ))
    }
}

/// The AWS regions this build knows: the commercial partition, GovCloud (US) and China,
/// as AWS listed them in November 2025 (ap-east-2 Taipei, ap-southeast-6 New Zealand and
/// ap-southeast-7 Thailand, mx-central-1 Mexico the newest). Keep it dated when adding one.
pub(crate) const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// When [`KNOWN_REGIONS`] was last checked against AWS's list.
pub(crate) const KNOWN_REGIONS_AS_OF: &str = "November 2025";

/// Names of regions AWS opened after this build, accepted besides [`KNOWN_REGIONS`]
/// (comma-separated).
pub(crate) const EXTRA_REGIONS_VAR: &str = "PROVISION_EXTRA_REGIONS";

/// An AWS region name such as `us-east-1`, `ap-southeast-2` or `us-gov-west-1` that AWS
/// has (see [`KNOWN_REGIONS`]; `PROVISION_EXTRA_REGIONS` adds newer ones).
pub(crate) fn region(region: &str) -> Result<(), String> {
    let extra = std::env::var(EXTRA_REGIONS_VAR).unwrap_or_default();
    region_in(region, &extra)
}

/// [`region`] with the extra names given.
pub(crate) fn region_in(region: &str, extra: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let is_word = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase());
    let ok = matches!(parts.len(), 3 | 4)
        && parts[0].len() == 2
        && is_word(parts[0])
        && parts[1..parts.len() - 1].iter().all(|part| is_word(part))
        && parts
            .last()
            .is_some_and(|n| (1..=2).contains(&n.len()) && n.chars().all(|c| c.is_ascii_digit()));
    if !ok {
        return Err(format!(
            "expected an AWS region such as us-east-1, eu-west-3 or us-gov-west-1 (got {region:?})"
        ));
    }
    if KNOWN_REGIONS.contains(&region) || extra.split(',').any(|r| r.trim() == region) {
        return Ok(());
    }
    // Same area first (`us-east-9` -> us-east-1, us-east-2), else the same continent.
    let area = region.rsplit_once('-').map_or(region, |(area, _)| area);
    let continent = parts[0];
    let mut near: Vec<&str> = KNOWN_REGIONS
        .iter()
        .copied()
        .filter(|r| r.starts_with(&format!("{area}-")))
        .collect();
    if near.is_empty() {
        near = KNOWN_REGIONS
            .iter()
            .copied()
            .filter(|r| r.starts_with(&format!("{continent}-")))
            .collect();
    }
    let suggestion = if near.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", near.join(" or "))
    };
    Err(format!(
        "{region:?} is not an AWS region{suggestion} (the regions AWS had in \
         {KNOWN_REGIONS_AS_OF}: {}). For a region opened since, set \
         {EXTRA_REGIONS_VAR}={region}",
        KNOWN_REGIONS.join(", ")
    ))
}

/// An S3 bucket name as S3 accepts it for a new bucket (general purpose buckets).
pub(crate) fn s3_bucket(name: &str) -> Result<(), String> {
    let problem = if !(3..=63).contains(&name.len()) {
        Some("must be 3 to 63 characters long")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        Some("may hold only lowercase letters, digits, dots and hyphens")
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some("must begin and end with a letter or digit")
    } else if name.contains("..") || name.contains(".-") || name.contains("-.") {
        Some("must not hold two dots in a row or a dot next to a hyphen")
    } else if name.parse::<std::net::Ipv4Addr>().is_ok() {
        Some("must not look like an IP address")
    } else if name.starts_with("xn--") || name.starts_with("sthree-") || name.ends_with("-s3alias")
    {
        Some("must not use a prefix or suffix S3 reserves (xn--, sthree-, -s3alias)")
    } else {
        None
    };
    match problem {
        Some(p) => Err(format!("{name:?} is not a valid S3 bucket name: it {p}")),
        None => Ok(()),
    }
}

/// An S3 object key for the state document: its lock object `<key>.lock` must fit too.
pub(crate) fn s3_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.ends_with('/') {
        return Err(format!(
            "{key:?} must name an object, not be empty or end with /"
        ));
    }
    if key.starts_with('/') {
        return Err(format!(
            "{key:?} must not begin with / (S3 keys are relative to the bucket)"
        ));
    }
    if key.len() + ".lock".len() > 1024 {
        return Err("is longer than S3's 1024 bytes (with the .lock suffix)".to_string());
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(format!("{key:?} holds a control character"));
    }
    Ok(())
}

/// A KMS key as S3 and Secrets Manager take it: a key id, a key ARN, an alias name or an
/// alias ARN.
pub(crate) fn kms_key_id(id: &str) -> Result<(), String> {
    let is_uuid = |s: &str| uuid::Uuid::parse_str(s).is_ok();
    let is_mrk = |s: &str| {
        s.starts_with("mrk-") && s.len() == 36 && s[4..].chars().all(|c| c.is_ascii_hexdigit())
    };
    let ok = is_uuid(id)
        || is_mrk(id)
        || (id.starts_with("alias/") && id.len() > 6 && !id.starts_with("alias/aws/"))
        || (id.starts_with("arn:aws")
            && id.contains(":kms:")
            && (id.contains(":key/") || id.contains(":alias/")));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a KMS key id (1234abcd-12ab-34cd-56ef-1234567890ab), a key ARN, or an \
             alias (alias/my-key) of a customer managed key (got {id:?})"
        ))
    }
}

/// A lowercase DNS name with at least `min_labels` labels and no trailing dot.
pub(crate) fn dns_name(name: &str, min_labels: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.ends_with('.') {
        return Err(format!(
            "write the name without the trailing dot: {:?}",
            name.trim_end_matches('.')
        ));
    }
    if name.contains("://") || name.contains('/') {
        return Err(format!(
            "expected a DNS name such as rancher.example.com, not a URL (got {name:?})"
        ));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "must be lowercase: {:?}",
            name.to_ascii_lowercase()
        ));
    }
    if name.len() > 253 {
        return Err(format!(
            "is {} characters; a DNS name has at most 253",
            name.len()
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        let chars_ok = label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if label.is_empty()
            || label.len() > 63
            || !chars_ok
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!(
                "{name:?} is not a valid DNS name: each dot-separated label must be 1 to 63 \
                 characters of a-z, 0-9 and '-', not starting or ending with '-'"
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|top| top.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "expected a DNS name, not an IP address (got {name:?})"
        ));
    }
    if labels.len() < min_labels {
        return Err(format!(
            "expected a fully qualified name with at least {min_labels} labels, such as \
             rancher.example.com (got {name:?})"
        ));
    }
    Ok(())
}

/// A Route53 hosted zone id: `^Z[A-Z0-9]{5,32}$`.
pub(crate) fn is_hosted_zone_id(zone: &str) -> bool {
    zone.starts_with('Z')
        && (6..=33).contains(&zone.len())
        && zone[1..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// An IPv4 network in CIDR notation with no host bits set.
pub(crate) fn ipv4_network(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text.parse().map_err(|_| {
        if text.parse::<Ipv4Addr>().is_ok() {
            format!("{text:?} is an address, not a network; write it as {text}/32")
        } else {
            format!("expected an IPv4 network in CIDR notation such as 10.42.0.0/16 (got {text:?})")
        }
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{text} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// An EC2 instance type such as `t3.large`, `m7i-flex.xlarge` or `c7i.metal-24xl`.
pub(crate) fn instance_type(text: &str) -> Result<(), String> {
    let ok = text.split_once('.').is_some_and(|(family, size)| {
        let part_ok = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        family.starts_with(|c: char| c.is_ascii_lowercase())
            && family.chars().any(|c| c.is_ascii_digit())
            && part_ok(family)
            && part_ok(size)
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected an EC2 instance type such as t3.large (got {text:?})"
        ))
    }
}

/// An RDS instance class: `db.` followed by an instance type, such as `db.t3.medium`.
pub(crate) fn db_instance_class(text: &str) -> Result<(), String> {
    match text.strip_prefix("db.") {
        Some(rest) if instance_type(rest).is_ok() => Ok(()),
        _ => Err(format!(
            "expected an RDS instance class such as db.t3.medium (got {text:?})"
        )),
    }
}

/// `ami-` followed by 8 or 17 lowercase hex digits.
pub(crate) fn ami(text: &str) -> Result<(), String> {
    let ok = text.strip_prefix("ami-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected an AMI id such as ami-0123456789abcdef0 (got {text:?})"
        ))
    }
}

/// Where a datastore engine version stands with RDS and K3s (checked late 2026, see
/// `shared/reference/rancher-airgap-aws.md`, "Datastores for K3s").
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EngineVersion {
    /// In RDS standard support and validated with K3s.
    Supported,
    /// Still sold by RDS, but only under Extended Support (a surcharge per vCPU-hour); the
    /// text names since when.
    ExtendedSupport(&'static str),
    /// In RDS standard support, but not (yet) in K3s's list of tested datastores.
    NotTestedWithK3s,
}

/// The default MySQL major: the newest that K3s supports (8.4, validated May 2026) and RDS
/// sells in standard support (8.0 left it on 31 July 2026).
pub(crate) const DEFAULT_MYSQL_VERSION: &str = "8.4";
/// The default PostgreSQL major: the newest in K3s's tested list (12 to 15) that RDS sells
/// in standard support (to February 2028).
pub(crate) const DEFAULT_POSTGRES_VERSION: &str = "15";

/// Splits `major.minor[.patch]` (MySQL) into the `major.minor` and checks the patch.
pub(crate) fn mysql_version(text: &str) -> Result<EngineVersion, String> {
    let (major_minor, patch) = match text.match_indices('.').nth(1) {
        Some((at, _)) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let patch_ok = patch.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    match major_minor {
        "8.4" if patch_ok => Ok(EngineVersion::Supported),
        "8.0" if patch_ok => Ok(EngineVersion::ExtendedSupport("31 July 2026")),
        "5.7" if patch_ok => Ok(EngineVersion::ExtendedSupport("29 February 2024")),
        _ => Err(format!(
            "expected a MySQL version RDS offers: \"8.4\" (or a full version such as \
             \"8.4.8\"); \"8.0\" and \"5.7\" are accepted with a warning (got {text:?})"
        )),
    }
}

/// `major[.minor]` (PostgreSQL 10 and later number only major and minor).
pub(crate) fn postgres_version(text: &str) -> Result<EngineVersion, String> {
    let (major, minor) = match text.split_once('.') {
        Some((major, minor)) => (major, Some(minor)),
        None => (text, None),
    };
    let minor_ok = minor.is_none_or(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()));
    match major {
        "14" | "15" if minor_ok => Ok(EngineVersion::Supported),
        "16" | "17" if minor_ok => Ok(EngineVersion::NotTestedWithK3s),
        "13" if minor_ok => Ok(EngineVersion::ExtendedSupport("1 March 2026")),
        "12" if minor_ok => Ok(EngineVersion::ExtendedSupport("1 March 2025")),
        "11" if minor_ok => Ok(EngineVersion::ExtendedSupport("1 March 2024")),
        _ => Err(format!(
            "expected a PostgreSQL version RDS offers: \"14\", \"15\", \"16\" or \"17\" (or \
             a full version such as \"15.8\"); \"11\" to \"13\" are accepted with a warning \
             (got {text:?})"
        )),
    }
}

/// The Rancher release the artifacts follow: `2.MINOR.PATCH`, an optional leading `v`.
/// Returns the version without the `v` and its minor.
pub(crate) fn rancher_version(text: &str) -> Result<(String, u32), String> {
    let bare = text.strip_prefix('v').unwrap_or(text);
    let parts: Vec<&str> = bare.split('.').collect();
    let numbers: Option<Vec<u32>> = parts.iter().map(|p| p.parse::<u32>().ok()).collect();
    match numbers.as_deref() {
        Some([2, minor, _patch]) if parts.iter().all(|p| !p.starts_with('+')) => {
            if *minor < 5 {
                Err(format!(
                    "Rancher {bare} is too old for this tool's air-gap steps (2.5 or later; \
                     current releases are 2.12 and later)"
                ))
            } else {
                Ok((bare.to_string(), *minor))
            }
        }
        _ => Err(format!(
            "expected a Rancher release such as \"2.14.0\" or \"v2.13.2\" (got {text:?})"
        )),
    }
}

/// A MySQL identifier starting with a letter: letters, digits, `_`, at most `max` long.
pub(crate) fn mysql_identifier(text: &str, max: usize) -> Result<(), String> {
    let mut chars = text.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && text.len() <= max;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must start with a letter and contain only letters, digits and '_', at most {max} \
             characters (got {text:?})"
        ))
    }
}

/// A Linux login name such as `ubuntu` or `ec2-user`.
pub(crate) fn login_name(text: &str) -> Result<(), String> {
    let mut chars = text.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && text.len() <= 32;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a Linux user name such as ubuntu or ec2-user (got {text:?})"
        ))
    }
}

/// The key types EC2 `ImportKeyPair` accepts.
const SSH_KEY_TYPES: &[&str] = &["ssh-ed25519", "ssh-rsa"];

/// What a well-known OpenSSH key type that `ImportKeyPair` refuses is.
fn refused_ssh_key_type(kind: &str) -> Option<&'static str> {
    if kind.contains("-cert-v01@openssh.com") {
        Some("an OpenSSH certificate")
    } else if kind.starts_with("sk-") {
        Some("a FIDO security-key (sk-) key")
    } else if kind.starts_with("ecdsa-sha2-") {
        Some("an ECDSA key")
    } else if kind == "ssh-dss" {
        Some("a DSA key")
    } else {
        None
    }
}

/// An OpenSSH public key line `TYPE BASE64 [comment]` of a type EC2 can import (RSA or
/// ED25519). Returns the trimmed line.
pub(crate) fn openssh_public_key(content: &str) -> Result<String, String> {
    let line = content.trim();
    if line.contains("PRIVATE KEY") {
        return Err("this is a private key; point ssh_public_key at the .pub file".to_string());
    }
    if line.is_empty() {
        return Err("the file is empty; expected an OpenSSH public key line".to_string());
    }
    if line.lines().count() > 1 {
        return Err("expected a single OpenSSH public key line, found several lines".to_string());
    }
    let mut fields = line.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    let blob = fields.next().unwrap_or_default();
    let accepted = SSH_KEY_TYPES.join(", ");
    if let Some(what) = refused_ssh_key_type(kind) {
        return Err(format!(
            "the key type is {kind:?}, {what}; EC2 ImportKeyPair accepts only RSA and ED25519 \
             keys ({accepted}): make one with `ssh-keygen -t ed25519`"
        ));
    }
    let expected = format!(
        "expected an OpenSSH public key line \"TYPE BASE64 [comment]\" with TYPE one of \
         {accepted}"
    );
    if !SSH_KEY_TYPES.contains(&kind) {
        let found: String = kind.chars().take(40).collect();
        return Err(format!("{expected} (found {found:?})"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| format!("{expected}; the key data is not valid base64"))?;
    // The blob starts with the key type as a length-prefixed string.
    let embedded = decoded
        .get(..4)
        .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
        .and_then(|len| decoded.get(4..4usize.checked_add(len)?));
    if embedded != Some(kind.as_bytes()) {
        return Err(format!(
            "the key data does not hold a {kind} key; is the file truncated or edited?"
        ));
    }
    Ok(line.to_string())
}

/// `host` or `host:port`, without a scheme or a path.
pub(crate) fn registry_address(url: &str) -> Result<(), String> {
    if let Some((scheme, rest)) = url.split_once("://") {
        return Err(format!(
            "write the registry address as host:port, without the {scheme}:// scheme \
             or a path: {:?}",
            rest.split('/').next().unwrap_or_default()
        ));
    }
    if url.contains('/') {
        return Err(format!(
            "expected host or host:port with no path, such as registry.example.com:5000 \
             (got {url:?})"
        ));
    }
    let (host, port) = match url.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (url, None),
    };
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(number) if number > 0 => {}
            _ => {
                return Err(format!(
                    "the port in {url:?} must be a number from 1 to 65535"
                ))
            }
        }
    }
    if host.parse::<Ipv4Addr>().is_err() && dns_name(host, 1).is_err() {
        return Err(format!(
            "expected host or host:port such as registry.example.com:5000 (got {url:?})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names() {
        for good in ["lab", "ab", "a1-b2", "a23456789012345678901"] {
            assert!(environment_name(good).is_ok(), "{good}");
        }
        for bad in [
            "a",
            "Lab",
            "1lab",
            "la_b",
            "",
            "a234567890123456789012",
            "lab.x",
        ] {
            assert!(environment_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions() {
        for good in [
            "us-east-1",
            "eu-west-3",
            "us-gov-west-1",
            "ap-southeast-2",
            "il-central-1",
        ] {
            assert!(region(good).is_ok(), "{good}");
        }
        for bad in [
            "us-east",
            "useast1",
            "US-EAST-1",
            "us-east-1a",
            "u-east-1",
            "us--1",
            "",
        ] {
            assert!(region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_well_formed_region_aws_does_not_have_is_refused_with_the_nearest_ones() {
        let err = region_in("us-east-9", "").unwrap_err();
        assert!(err.contains("\"us-east-9\" is not an AWS region"), "{err}");
        assert!(
            err.contains("did you mean us-east-1 or us-east-2?"),
            "{err}"
        );
        assert!(err.contains("November 2025"), "{err}");
        assert!(err.contains("PROVISION_EXTRA_REGIONS=us-east-9"), "{err}");
        let err = region_in("eu-middle-1", "").unwrap_err();
        assert!(err.contains("did you mean eu-central-1"), "{err}");
        // A region AWS opened after this build is accepted when named.
        assert!(region_in("us-east-9", "xx-west-1, us-east-9").is_ok());
        for known in KNOWN_REGIONS {
            assert!(region_in(known, "").is_ok(), "{known}");
        }
    }

    #[test]
    fn dns_names() {
        assert!(dns_name("rancher.lab.example.com", 2).is_ok());
        assert!(dns_name("a-b.c", 2).is_ok());
        assert!(dns_name("internal", 1).is_ok());
        assert!(dns_name("internal", 2)
            .unwrap_err()
            .contains("at least 2 labels"));
        assert!(dns_name("Rancher.example.com", 2)
            .unwrap_err()
            .contains("lowercase"));
        assert!(dns_name("rancher.example.com.", 2)
            .unwrap_err()
            .contains("trailing dot"));
        assert!(dns_name("10.0.0.1", 2).unwrap_err().contains("IP address"));
        assert!(dns_name("-a.example.com", 2).is_err());
        assert!(dns_name("a..com", 2).is_err());
        assert!(dns_name("a_b.com", 2).is_err());
        assert!(dns_name("https://rancher.example.com", 2)
            .unwrap_err()
            .contains("URL"));
        assert!(dns_name(&format!("{}.com", "a".repeat(64)), 2).is_err());
        assert!(dns_name("", 1).is_err());
    }

    #[test]
    fn hosted_zone_ids() {
        assert!(is_hosted_zone_id("Z0123456789ABCDEFGHIJ"));
        assert!(is_hosted_zone_id("Z12345"));
        assert!(!is_hosted_zone_id("Z1234"));
        assert!(!is_hosted_zone_id("z123456"));
        assert!(!is_hosted_zone_id("lab.example.com"));
        assert!(!is_hosted_zone_id(&format!("Z{}", "1".repeat(33))));
    }

    #[test]
    fn ipv4_networks() {
        assert_eq!(ipv4_network("10.42.0.0/16").unwrap().prefix_len(), 16);
        let host_bits = ipv4_network("10.42.1.0/16").unwrap_err();
        assert!(
            host_bits.contains("did you mean 10.42.0.0/16?"),
            "{host_bits}"
        );
        assert!(ipv4_network("10.0.0.1")
            .unwrap_err()
            .contains("10.0.0.1/32"));
        assert!(ipv4_network("10.0.0.0/33").is_err());
        assert!(ipv4_network("fd00::/8").is_err());
        assert!(ipv4_network("banana").is_err());
    }

    #[test]
    fn instance_types_and_classes() {
        for good in [
            "t3.large",
            "m7i-flex.xlarge",
            "c7i.metal-24xl",
            "u-6tb1.metal",
            "t3a.2xlarge",
        ] {
            assert!(instance_type(good).is_ok(), "{good}");
        }
        for bad in [
            "t3",
            "large",
            "T3.large",
            "t3.",
            ".large",
            "t.large",
            "t3.large ",
        ] {
            assert!(instance_type(bad).is_err(), "{bad}");
        }
        assert!(db_instance_class("db.t3.medium").is_ok());
        assert!(db_instance_class("t3.medium").is_err());
        assert!(db_instance_class("db.").is_err());
    }

    #[test]
    fn amis() {
        assert!(ami("ami-0123456789abcdef0").is_ok());
        assert!(ami("ami-12345678").is_ok());
        assert!(ami("ami-0123456789ABCDEF0").is_err());
        assert!(ami("ami-123456789").is_err());
        assert!(ami("0123456789abcdef0").is_err());
        assert!(ami("ami-0123456789abcdefg").is_err());
    }

    #[test]
    fn mysql_versions() {
        assert_eq!(mysql_version("8.4"), Ok(EngineVersion::Supported));
        assert_eq!(mysql_version("8.4.3"), Ok(EngineVersion::Supported));
        assert!(matches!(
            mysql_version("8.0"),
            Ok(EngineVersion::ExtendedSupport(_))
        ));
        assert!(matches!(
            mysql_version("8.0.39"),
            Ok(EngineVersion::ExtendedSupport(_))
        ));
        assert!(matches!(
            mysql_version("5.7"),
            Ok(EngineVersion::ExtendedSupport(_))
        ));
        assert!(matches!(
            mysql_version("5.7.44"),
            Ok(EngineVersion::ExtendedSupport(_))
        ));
        for bad in ["8", "8.1", "8.0.", "8.0.x", "5.6", "10.11", "", "8.0.39.1"] {
            assert!(mysql_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn postgres_versions() {
        assert_eq!(postgres_version("15"), Ok(EngineVersion::Supported));
        assert_eq!(postgres_version("14.12"), Ok(EngineVersion::Supported));
        assert_eq!(
            postgres_version("16.4"),
            Ok(EngineVersion::NotTestedWithK3s)
        );
        assert!(matches!(
            postgres_version("13.16"),
            Ok(EngineVersion::ExtendedSupport(_))
        ));
        for bad in ["", "15.", "15.x", "9.6", "10", "15.4.1", "8.0"] {
            assert!(postgres_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rancher_versions() {
        assert_eq!(rancher_version("2.14.0"), Ok(("2.14.0".into(), 14)));
        assert_eq!(rancher_version("v2.13.2"), Ok(("2.13.2".into(), 13)));
        for bad in ["", "2.14", "v2", "3.0.0", "2.4.9", "2.14.0-rc1", "latest"] {
            assert!(rancher_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mysql_identifiers_and_logins() {
        assert!(mysql_identifier("k3s", 64).is_ok());
        assert!(mysql_identifier("K3s_db2", 64).is_ok());
        assert!(mysql_identifier("3ks", 64).is_err());
        assert!(mysql_identifier("k3s-db", 64).is_err());
        assert!(mysql_identifier(&"a".repeat(17), 16).is_err());
        assert!(login_name("ubuntu").is_ok());
        assert!(login_name("ec2-user").is_ok());
        assert!(login_name("Ubuntu").is_err());
        assert!(login_name("").is_err());
    }

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq1xK3cCjZ9gmCGY1e7lqf0K9dH5qN0oY1Qm0Cj9n7c me@host";

    #[test]
    fn openssh_keys() {
        assert_eq!(
            openssh_public_key(&format!("{ED25519}\n")).unwrap(),
            ED25519
        );
        assert!(openssh_public_key("ssh-dss AAAA").is_err());
        assert!(openssh_public_key("").unwrap_err().contains("empty"));
        assert!(
            openssh_public_key(&format!("-----BEGIN OPENSSH {}-----\nabc", "PRIVATE KEY"))
                .unwrap_err()
                .contains("private key")
        );
        assert!(openssh_public_key("ssh-ed25519 !!!")
            .unwrap_err()
            .contains("base64"));
        // Valid base64, but the blob names another key type.
        let mismatched = ED25519.replace("ssh-ed25519 ", "ssh-rsa ");
        assert!(openssh_public_key(&mismatched)
            .unwrap_err()
            .contains("ssh-rsa"));
        assert!(openssh_public_key(&format!("{ED25519}\n{ED25519}")).is_err());
    }

    #[test]
    fn registry_addresses() {
        for good in [
            "registry.example.com",
            "registry.example.com:5000",
            "10.0.0.5:443",
            "reg",
        ] {
            assert!(registry_address(good).is_ok(), "{good}");
        }
        let scheme = registry_address("https://registry.example.com:5000/v2/").unwrap_err();
        assert!(scheme.contains("\"registry.example.com:5000\""), "{scheme}");
        assert!(registry_address("registry.example.com/library").is_err());
        assert!(registry_address("registry.example.com:0").is_err());
        assert!(registry_address("registry.example.com:99999").is_err());
        assert!(registry_address("bad_host:5000").is_err());
        assert!(registry_address("").is_err());
    }
}
