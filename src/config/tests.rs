//! Tests of the whole module through its public API: `parse_str`, `load`, `template`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::model::Scheme;

const FILE: &str = "provision.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_str(text, Path::new(FILE))
}

/// The config of a valid file. The warning about a missing SSH key depends on the
/// machine's `~/.ssh` (the default key is used when it exists): it is dropped here and
/// tested through the binary with a HOME of the test's own.
fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(mut config) => {
            config.warnings.retain(|w| !w.starts_with("no SSH key"));
            config
        }
        Err(error) => panic!("expected a valid config, got:\n{error}\n--- file ---\n{text}"),
    }
}

#[test]
fn admin_cidrs_open_to_the_world_warn_and_a_missing_key_is_said_to_lock_everyone_out() {
    let world = ok(&file(
        "k3s",
        "",
        "\n[network]\nadmin_cidrs = [\"0.0.0.0/0\"]\n",
    ));
    assert!(
        world
            .warnings
            .iter()
            .any(|w| w.contains("0.0.0.0/0") && w.contains("whole internet")),
        "{:?}",
        world.warnings
    );
    let narrow = ok(&file(
        "k3s",
        "",
        "\n[network]\nadmin_cidrs = [\"203.0.113.0/24\"]\n",
    ));
    assert!(!narrow.warnings.iter().any(|w| w.contains("whole internet")));
    // With a key file given there is never a key warning.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k.pub"), format!("{ED25519}\n")).unwrap();
    let text = file("k3s", "ssh_public_key = \"k.pub\"\n", "");
    let keyed = parse_str(&text, &dir.path().join(FILE)).unwrap();
    assert!(!keyed.warnings.iter().any(|w| w.starts_with("no SSH key")));
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(_) => panic!("expected problems, the file was accepted:\n{text}"),
        Err(error) => error.problems().to_vec(),
    }
}

/// The single problem of `text`, checked to be at `line` with `key`.
fn one_problem(text: &str, line: usize, key: &str) -> Problem {
    let all = problems(text);
    assert_eq!(all.len(), 1, "expected one problem, got {all:#?}");
    let problem = all.into_iter().next().unwrap();
    assert_eq!(
        (problem.line, problem.key.as_str()),
        (line, key),
        "{problem:#?}"
    );
    problem
}

/// A minimal file. Line 9 is `[nodes]`, line 10 the ami; `nodes` lines start at line 11,
/// followed by `rest`.
fn file(topology: &str, nodes: &str, rest: &str) -> String {
    format!(
        "name = \"lab\"\n\
         region = \"us-east-1\"\n\
         topology = \"{topology}\"\n\
         hostname = \"rancher.lab.example.com\"\n\
         \n\
         [dns]\n\
         zone = \"lab.example.com\"\n\
         \n\
         [nodes]\n\
         ami = \"ami-0123456789abcdef0\"\n\
         {nodes}{rest}"
    )
}

/// First line number holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in file"))
        + 1
}

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq1xK3cCjZ9gmCGY1e7lqf0K9dH5qN0oY1Qm0Cj9n7c me@host";

// ---- resolution with defaults ------------------------------------------------------------

#[test]
fn minimal_k3s_resolves_with_defaults() {
    let config = ok(&file("k3s", "", ""));
    assert_eq!(config.path, PathBuf::from(FILE));
    assert_eq!(config.name, "lab");
    assert_eq!(config.region, "us-east-1");
    assert_eq!(config.topology, Topology::K3s);
    assert_eq!(config.hostname, "rancher.lab.example.com");
    assert_eq!(config.network.vpc_cidr.to_string(), "10.42.0.0/16");
    assert_eq!(config.network.zones, 2);
    assert!(config.network.admin_cidrs.is_empty());
    assert_eq!(config.nodes.count, 2);
    assert_eq!(config.nodes.instance_type, "t3.large");
    assert_eq!(config.nodes.ami, "ami-0123456789abcdef0");
    assert_eq!(config.nodes.root_volume_gb, 50);
    assert_eq!(config.nodes.ssh_public_key, None);
    assert_eq!(config.nodes.ssh_public_key_text, None);
    assert_eq!(config.nodes.ssh_user, "ubuntu");
    let datastore = config
        .datastore
        .expect("k3s has an RDS datastore by default");
    assert_eq!(datastore.engine, crate::model::DbEngine::Mysql);
    // The newest major K3s supports and RDS sells in standard support.
    assert_eq!(datastore.engine_version, "8.4");
    assert_eq!(datastore.instance_class, "db.t3.medium");
    assert_eq!(datastore.storage_gb, 20);
    assert_eq!(datastore.database, "k3s");
    assert_eq!(datastore.username, "admin");
    assert_eq!(datastore.backup_retention_days, 7);
    let lb = config.load_balancer.expect("k3s has a load balancer");
    assert_eq!(lb.scheme, Scheme::Internal);
    assert!(lb.kube_api);
    assert_eq!(config.dns.zone, "lab.example.com");
    assert!(!config.dns.private_zone);
    assert_eq!(config.dns.ttl, 60);
    assert_eq!(config.dns.record_type, RecordType::Alias);
    match config.registry {
        Registry::Node {
            ref instance_type,
            volume_gb,
            port,
        } => {
            assert_eq!(instance_type, "t3.medium");
            assert_eq!(volume_gb, 200);
            assert_eq!(port, 5000);
        }
        ref other => panic!("expected a node registry, got {other:?}"),
    }
    assert_eq!(config.registry.port(), Some(5000));
    let t = &config.timeouts;
    assert_eq!(t.poll_interval, Duration::from_secs(5));
    assert_eq!(t.instance, Duration::from_secs(600));
    assert_eq!(t.database, Duration::from_secs(3600));
    assert_eq!(t.load_balancer, Duration::from_secs(900));
    assert_eq!(t.dns, Duration::from_secs(300));
    assert_eq!(t.dependency, Duration::from_secs(600));
    assert_eq!(config.rancher.version, "2.14.0");
    assert_eq!(config.rancher.minor, 14);
    assert_eq!(
        config.warnings,
        vec![
            "network.admin_cidrs is empty: only hosts inside the VPC can reach the bastion, \
             registry and load balancer"
                .to_string()
        ]
    );
}

#[test]
fn minimal_rke_resolves_with_defaults() {
    let config = ok(&file("rke", "", ""));
    assert_eq!(config.topology, Topology::Rke);
    assert_eq!(config.nodes.count, 3);
    assert_eq!(config.nodes.instance_type, "t3.large");
    assert!(config.datastore.is_none());
    let lb = config.load_balancer.expect("rke has a load balancer");
    assert!(lb.kube_api);
    assert_eq!(lb.scheme, Scheme::Internal);
}

#[test]
fn minimal_docker_resolves_with_defaults() {
    let config = ok(&file("docker", "", ""));
    assert_eq!(config.topology, Topology::Docker);
    assert_eq!(config.nodes.count, 1);
    assert_eq!(config.nodes.instance_type, "t3.medium");
    assert!(config.datastore.is_none());
    let lb = config
        .load_balancer
        .expect("docker has a load balancer by default");
    assert!(!lb.kube_api);
}

#[test]
fn docker_without_load_balancer() {
    let config = ok(&file("docker", "", "[load_balancer]\nenabled = false\n"));
    assert!(config.load_balancer.is_none());
    let config = ok(&file(
        "docker",
        "",
        "[load_balancer]\nenabled = true\nscheme = \"internet-facing\"\nkube_api = false\n",
    ));
    let lb = config.load_balancer.unwrap();
    assert_eq!(lb.scheme, Scheme::InternetFacing);
    assert!(!lb.kube_api);
}

#[test]
fn explicit_values_override_defaults() {
    let text = file(
        "rke",
        "count = 5\ninstance_type = \"m6i.xlarge\"\nroot_volume_gb = 100\nssh_user = \"ec2-user\"\n",
        "[network]\nvpc_cidr = \"10.10.0.0/20\"\nzones = 3\n\
         admin_cidrs = [\"203.0.113.0/24\", \"198.51.100.7\"]\n\
         [load_balancer]\nscheme = \"internet-facing\"\nkube_api = false\n\
         [registry]\ninstance_type = \"t3.large\"\nvolume_gb = 500\nport = 8443\n\
         [timeouts]\npoll_seconds = 0.5\ninstance_minutes = 2\ndatabase_minutes = 1.5\n",
    );
    let config = ok(&text);
    assert_eq!(config.nodes.count, 5);
    assert_eq!(config.nodes.instance_type, "m6i.xlarge");
    assert_eq!(config.nodes.root_volume_gb, 100);
    assert_eq!(config.nodes.ssh_user, "ec2-user");
    assert_eq!(config.network.vpc_cidr.to_string(), "10.10.0.0/20");
    assert_eq!(config.network.zones, 3);
    let cidrs: Vec<String> = config
        .network
        .admin_cidrs
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(cidrs, vec!["203.0.113.0/24", "198.51.100.7/32"]);
    // RKE1's end of life, Rancher 2.14 on RKE1, Docker in the image.
    assert_eq!(config.warnings.len(), 3, "{:?}", config.warnings);
    assert!(config.warnings[0].contains("RKE1"));
    let lb = config.load_balancer.unwrap();
    assert_eq!(lb.scheme, Scheme::InternetFacing);
    assert!(!lb.kube_api);
    assert_eq!(config.registry.port(), Some(8443));
    assert!(matches!(
        config.registry,
        Registry::Node { volume_gb: 500, ref instance_type, .. } if instance_type == "t3.large"
    ));
    assert_eq!(config.timeouts.poll_interval, Duration::from_millis(500));
    assert_eq!(config.timeouts.instance, Duration::from_secs(120));
    assert_eq!(config.timeouts.database, Duration::from_secs(90));
    assert_eq!(config.timeouts.dns, Duration::from_secs(300));
}

// ---- template ------------------------------------------------------------------------------

#[test]
fn template_resolves_for_every_topology() {
    for topology in Topology::ALL {
        let text = template(topology);
        let config = ok(&text);
        assert_eq!(config.topology, topology);
        assert_eq!(config.name, "lab");
        assert_eq!(config.region, "us-east-1");
        assert_eq!(config.hostname, "rancher.lab.example.com");
        assert_eq!(config.nodes.ami, "ami-0123456789abcdef0");
        assert_eq!(config.dns.zone, "lab.example.com");
        assert_eq!(config.nodes.count, topology.default_node_count());
        assert_eq!(config.datastore.is_some(), topology == Topology::K3s);
    }
}

/// Uncomments every `# key = value` line of the template whose value is the default.
fn uncomment_defaults(text: &str) -> String {
    // Examples rather than defaults: enabling them changes the result.
    // The S3 state keys are examples for `backend = "s3"`, not defaults of "local".
    let examples = [
        "admin_cidrs",
        "ssh_public_key",
        "url",
        "ca_file",
        "bucket",
        "key",
        "region",
        "kms_key_id",
    ];
    text.lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.contains(" = ")
                    && rest.split(' ').next().is_some_and(|key| {
                        key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                            && !examples.contains(&key)
                    }) =>
            {
                rest.to_string()
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn template_comments_show_the_real_defaults() {
    for topology in Topology::ALL {
        let text = template(topology);
        let uncommented = uncomment_defaults(&text);
        assert!(
            uncommented.lines().count() == text.lines().count()
                && uncommented.contains("\nvpc_cidr = ")
                && uncommented.contains("\npoll_seconds = "),
            "nothing was uncommented"
        );
        let commented = ok(&text);
        let explicit = ok(&uncommented);
        assert_eq!(
            format!("{commented:?}"),
            format!("{explicit:?}"),
            "defaults written in the {} template differ from the real ones",
            topology.as_str()
        );
    }
}

#[test]
fn template_mentions_every_accepted_key() {
    let keys = [
        "vpc_cidr",
        "zones",
        "admin_cidrs",
        "count",
        "instance_type",
        "ami",
        "root_volume_gb",
        "ssh_public_key",
        "ssh_user",
        "scheme",
        "zone",
        "private_zone",
        "ttl",
        "record_type",
        "mode",
        "volume_gb",
        "port",
        "url",
        "ca_file",
        "poll_seconds",
        "instance_minutes",
        "database_minutes",
        "load_balancer_minutes",
        "dns_minutes",
        "dependency_minutes",
        "backend",
        "bucket",
        "key",
        "region",
        "kms_key_id",
    ];
    for topology in Topology::ALL {
        let text = template(topology);
        assert!(text.contains("# version = "), "{topology:?}");
        for key in keys {
            assert!(
                text.contains(&format!("{key} = ")),
                "{key} missing for {topology:?}"
            );
        }
    }
    let k3s = template(Topology::K3s);
    for key in [
        "engine",
        "engine_version",
        "instance_class",
        "storage_gb",
        "database",
        "username",
    ] {
        assert!(k3s.contains(&format!("# {key} = ")), "{key}");
    }
    assert!(k3s.contains("# kube_api = true"));
    assert!(!template(Topology::Rke).contains("[datastore]"));
    assert!(template(Topology::Docker).contains("# enabled = true"));
    assert!(!template(Topology::K3s).contains("enabled ="));
}

// ---- load ----------------------------------------------------------------------------------

#[test]
fn load_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provision.toml");
    std::fs::write(&path, file("rke", "", "")).unwrap();
    let config = load(&path).unwrap();
    assert_eq!(config.path, path);
    assert_eq!(config.topology, Topology::Rke);
}

#[test]
fn load_of_a_missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let error = load(&path).unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with(&format!("{}: ", path.display())), "{text}");
    assert!(text.contains("not found"), "{text}");
    assert_eq!(error.path(), path);
    assert_eq!(error.problems()[0].line, 0);
}

// ---- syntax, unknown keys, types -----------------------------------------------------------

#[test]
fn syntax_error_is_a_single_located_problem() {
    let text = "name = \"lab\"\nregion = \"us-east-1\"\ntopology = k3s\nhostname = 5\n";
    let problem = one_problem(text, 3, "");
    assert_eq!(problem.column, 12);
    assert!(
        problem.message.starts_with("invalid TOML: "),
        "{}",
        problem.message
    );
    let display = parse(text).unwrap_err().to_string();
    assert!(
        display.starts_with("provision.toml:3:12: invalid TOML: "),
        "{display}"
    );
    assert!(!display.contains('\n'), "{display}");
}

#[test]
fn duplicate_key_is_a_syntax_error_at_the_second_one() {
    let text = file("k3s", "count = 2\ncount = 3\n", "");
    let problem = one_problem(&text, 12, "");
    assert!(
        problem.message.contains("duplicate key"),
        "{}",
        problem.message
    );
}

#[test]
fn empty_file_reports_every_required_key() {
    let all = problems("");
    let keys: Vec<&str> = all.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "name",
        "region",
        "topology",
        "hostname",
        "nodes.ami",
        "dns.zone",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert_eq!(all.len(), 6, "{all:#?}");
    // Nothing in an empty file to point at: the problems are the file's.
    assert!(all.iter().all(|p| (p.line, p.column) == (0, 0)), "{all:#?}");
    let ami = all.iter().find(|p| p.key == "nodes.ami").unwrap();
    assert!(ami.message.contains("under [nodes]"), "{}", ami.message);
}

#[test]
fn a_missing_section_is_the_files_problem_not_line_one() {
    // Every section but [dns]: `dns.zone` used to be located at 1:1, under `name`.
    let text = "name = \"lab\"\nregion = \"us-east-1\"\ntopology = \"k3s\"\n\
                hostname = \"rancher.lab.example.com\"\n[nodes]\nami = \"ami-0123456789abcdef0\"\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provision.toml");
    std::fs::write(&path, text).unwrap();
    let err = crate::config::load(&path).unwrap_err();
    let zone = err.problems().iter().find(|p| p.key == "dns.zone").unwrap();
    assert_eq!((zone.line, zone.column), (0, 0), "{zone:?}");
    assert!(zone.message.contains("under [dns]"), "{}", zone.message);
    let shown = err.render_with_source(text, false);
    assert!(
        !shown.contains("name = \"lab\""),
        "points at `name`: {shown}"
    );
    assert!(
        shown.contains(&format!(
            "{}: dns.zone: required key is missing",
            path.display()
        )),
        "{shown}"
    );
    // A missing top-level key is the file's too.
    let err = crate::config::parse_str(
        &format!("{text}[dns]\nzone = \"lab.example.com\"\n")
            .replace("region = \"us-east-1\"\n", ""),
        &path,
    )
    .unwrap_err();
    let region = err.problems().iter().find(|p| p.key == "region").unwrap();
    assert_eq!((region.line, region.column), (0, 0), "{region:?}");
}

#[test]
fn missing_key_in_an_existing_table_points_at_its_header() {
    let text = "name = \"lab\"\nregion = \"us-east-1\"\ntopology = \"k3s\"\n\
                hostname = \"rancher.lab.example.com\"\n[nodes]\ncount = 2\n\n[dns]\nttl = 30\n";
    let all = problems(text);
    let lines: Vec<(usize, &str)> = all.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(lines, vec![(5, "nodes.ami"), (8, "dns.zone")]);
}

#[test]
fn unknown_top_level_key_lists_accepted_keys() {
    let text = file("k3s", "", "colour = \"blue\"\n");
    let problem = one_problem(&text, 11, "nodes.colour");
    assert!(problem
        .message
        .contains("accepted keys in [nodes] are: count,"));
    let text = format!("clusters = 3\n{}", file("k3s", "", ""));
    let problem = one_problem(&text, 1, "clusters");
    assert!(
        problem
            .message
            .starts_with("unknown key; accepted keys at the top level are: name,"),
        "{}",
        problem.message
    );
    assert!(problem.message.contains("timeouts"));
}

#[test]
fn unknown_nested_key_reports_its_path() {
    let text = file(
        "k3s",
        "",
        "\n[registry]\nmode = \"node\"\n[registry.tls]\nenabled = true\n",
    );
    let problem = one_problem(&text, 14, "registry.tls");
    assert!(problem
        .message
        .contains("accepted keys in [registry] are: mode,"));

    let text = file("k3s", "", "[timeouts]\npoll_secs = 3\n");
    let problem = one_problem(&text, 12, "timeouts.poll_secs");
    assert!(
        problem.message.contains("poll_seconds"),
        "{}",
        problem.message
    );

    let text = file("k3s", "", "[load_balancer]\nhealth = { interval = 5 }\n");
    one_problem(&text, 12, "load_balancer.health");
}

#[test]
fn wrong_types_name_key_and_expected_type() {
    let text = file("k3s", "count = \"2\"\nroot_volume_gb = 50.5\n", "");
    let all = problems(&text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!((all[0].line, all[0].key.as_str()), (11, "nodes.count"));
    assert_eq!(
        all[0].message,
        "expected an integer, found a string (write 2 without quotes)"
    );
    assert_eq!(
        (all[1].line, all[1].key.as_str()),
        (12, "nodes.root_volume_gb")
    );
    assert_eq!(all[1].message, "expected an integer, found a float");

    let problem = one_problem(&file("k3s", "", "[dns.x]\n"), 11, "dns.x");
    assert!(problem.message.starts_with("unknown key"));

    let text = file("k3s", "", "[load_balancer]\nkube_api = \"yes\"\n");
    let problem = one_problem(&text, 12, "load_balancer.kube_api");
    assert_eq!(
        problem.message,
        "expected a boolean (true or false), found a string"
    );

    let text = format!("{}network = \"10.0.0.0/16\"\n", "");
    let all = problems(&format!("{text}{}", file("k3s", "", "")));
    let network = all.iter().find(|p| p.key == "network").unwrap();
    assert_eq!(network.line, 1);
    assert_eq!(network.message, "expected a table, found a string");

    let problem = one_problem(
        &file("k3s", "", "[[registry]]\nmode = \"node\"\n"),
        11,
        "registry",
    );
    assert_eq!(problem.message, "expected a table, found an array");

    let text = file("k3s", "", "").replace("name = \"lab\"", "name = 7");
    let problem = one_problem(&text, 1, "name");
    assert_eq!(problem.message, "expected a string, found an integer");
}

// ---- top-level values ----------------------------------------------------------------------

#[test]
fn bad_top_level_values_are_all_reported() {
    let text = file("k8s", "", "")
        .replace("\"lab\"", "\"Lab_1\"")
        .replace("us-east-1", "us-east")
        .replace("rancher.lab.example.com", "Rancher");
    let all = problems(&text);
    let located: Vec<(usize, &str)> = all.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        located,
        vec![(1, "name"), (2, "region"), (3, "topology"), (4, "hostname")]
    );
    assert!(all[2]
        .message
        .contains("\"k3s\", \"rke2\", \"rke\" or \"docker\""));
    assert!(all[3].message.contains("lowercase"));
}

#[test]
fn hostname_must_be_inside_the_zone() {
    let text = file("k3s", "", "").replace("rancher.lab.example.com", "rancher.other.org");
    let problem = one_problem(&text, 4, "hostname");
    assert!(problem
        .message
        .contains("not inside the DNS zone \"lab.example.com\""));

    // The zone itself is fine as the hostname.
    let text = file("k3s", "", "").replace("rancher.lab.example.com", "lab.example.com");
    ok(&text);
    // A name that merely ends with the zone's text is not inside it.
    let text = file("k3s", "", "").replace("rancher.lab.example.com", "rancherlab.example.com");
    one_problem(&text, 4, "hostname");
    // With a zone id the zone's name is unknown until the cloud is asked.
    let text = file("k3s", "", "")
        .replace("\"lab.example.com\"", "\"Z0123456789ABCDEFGHIJ\"")
        .replace("rancher.lab.example.com", "rancher.other.org");
    assert_eq!(ok(&text).dns.zone, "Z0123456789ABCDEFGHIJ");
}

#[test]
fn hostname_needs_two_labels() {
    let text = file("k3s", "", "").replace("rancher.lab.example.com", "rancher");
    let problem = one_problem(&text, 4, "hostname");
    assert!(
        problem.message.contains("at least 2 labels"),
        "{}",
        problem.message
    );
}

// ---- network ---------------------------------------------------------------------------------

#[test]
fn vpc_cidr_with_host_bits_suggests_the_network() {
    let text = file("k3s", "", "[network]\nvpc_cidr = \"10.42.7.0/16\"\n");
    let problem = one_problem(&text, 12, "network.vpc_cidr");
    assert!(
        problem.message.contains("did you mean 10.42.0.0/16"),
        "{}",
        problem.message
    );
}

#[test]
fn vpc_cidr_size_and_syntax() {
    let text = file("k3s", "", "[network]\nvpc_cidr = \"10.0.0.0/8\"\n");
    let problem = one_problem(&text, 12, "network.vpc_cidr");
    assert!(problem.message.contains("between /16 and /24"));
    let text = file("k3s", "", "[network]\nvpc_cidr = \"10.0.0.0/25\"\n");
    one_problem(&text, 12, "network.vpc_cidr");
    let text = file("k3s", "", "[network]\nvpc_cidr = \"10.0.0/16\"\n");
    one_problem(&text, 12, "network.vpc_cidr");
    ok(&file(
        "k3s",
        "",
        "[network]\nvpc_cidr = \"192.168.4.0/24\"\n",
    ));
}

#[test]
fn zone_count_limits() {
    let text = file("rke", "", "[network]\nzones = 7\n");
    assert_eq!(
        one_problem(&text, 12, "network.zones").message,
        "must be between 1 and 6 (got 7)"
    );
    let text = file("k3s", "", "[network]\nzones = 1\n");
    let problem = one_problem(&text, 12, "network.zones");
    assert!(
        problem.message.contains("RDS subnet group"),
        "{}",
        problem.message
    );
    assert_eq!(
        ok(&file("rke", "", "[network]\nzones = 1\n")).network.zones,
        1
    );
    assert_eq!(
        ok(&file("docker", "", "[network]\nzones = 6\n"))
            .network
            .zones,
        6
    );
}

#[test]
fn admin_cidrs_report_each_bad_entry() {
    let text = file(
        "k3s",
        "",
        "[network]\nadmin_cidrs = [\n  \"203.0.113.0/24\",\n  \"203.0.113.9/24\",\n  \"nope\",\n  4,\n]\n",
    );
    let all = problems(&text);
    let located: Vec<(usize, &str)> = all.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        located,
        vec![
            (14, "network.admin_cidrs[1]"),
            (15, "network.admin_cidrs[2]"),
            (16, "network.admin_cidrs[3]"),
        ]
    );
    assert!(all[0].message.contains("did you mean 203.0.113.0/24"));
    assert_eq!(all[0].column, 3);
    assert_eq!(all[2].message, "expected a string, found an integer");
}

#[test]
fn admin_cidrs_not_an_array() {
    let text = file("k3s", "", "[network]\nadmin_cidrs = \"0.0.0.0/0\"\n");
    let problem = one_problem(&text, 12, "network.admin_cidrs");
    assert_eq!(
        problem.message,
        "expected an array of strings, found a string"
    );
}

// ---- nodes -------------------------------------------------------------------------------------

#[test]
fn rke_needs_an_odd_count_of_at_least_three() {
    let text = file("rke", "count = 2\n", "");
    let problem = one_problem(&text, 11, "nodes.count");
    assert_eq!(problem.column, 1);
    assert_eq!(
        parse(&text).unwrap_err().to_string(),
        "provision.toml:11:1: nodes.count: rke needs an odd node count of at least 3 for \
         etcd quorum (got 2)"
    );
    one_problem(&file("rke", "count = 4\n", ""), 11, "nodes.count");
    one_problem(&file("rke", "count = 1\n", ""), 11, "nodes.count");
    let too_many = one_problem(&file("rke", "count = 11\n", ""), 11, "nodes.count");
    assert!(too_many.message.contains("at most 9"));
    assert_eq!(ok(&file("rke", "count = 9\n", "")).nodes.count, 9);
}

#[test]
fn k3s_and_docker_counts() {
    one_problem(&file("k3s", "count = 0\n", ""), 11, "nodes.count");
    one_problem(&file("k3s", "count = 10\n", ""), 11, "nodes.count");
    assert_eq!(ok(&file("k3s", "count = 1\n", "")).nodes.count, 1);
    assert_eq!(ok(&file("k3s", "count = 4\n", "")).nodes.count, 4);
    let problem = one_problem(&file("docker", "count = 2\n", ""), 11, "nodes.count");
    assert!(problem.message.contains("exactly 1"));
    let problem = one_problem(&file("k3s", "count = -1\n", ""), 11, "nodes.count");
    assert!(problem.message.contains("got -1"), "{}", problem.message);
}

#[test]
fn node_values_are_checked() {
    let text = file(
        "k3s",
        "instance_type = \"large\"\nroot_volume_gb = 10\nssh_user = \"Root\"\n",
        "",
    )
    .replace("ami-0123456789abcdef0", "ami-xyz");
    let all = problems(&text);
    let located: Vec<(usize, &str)> = all.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        located,
        vec![
            (10, "nodes.ami"),
            (11, "nodes.instance_type"),
            (12, "nodes.root_volume_gb"),
            (13, "nodes.ssh_user"),
        ]
    );
    assert_eq!(all[2].message, "must be between 20 and 16384 (got 10)");
}

#[test]
fn ssh_public_key_relative_path_resolves_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/id.pub"), format!("\n{ED25519}\n\n")).unwrap();
    let config_path = dir.path().join("provision.toml");
    std::fs::write(
        &config_path,
        file("k3s", "ssh_public_key = \"keys/id.pub\"\n", ""),
    )
    .unwrap();
    let config = load(&config_path).unwrap();
    assert_eq!(
        config.nodes.ssh_public_key,
        Some(dir.path().join("keys/id.pub"))
    );
    assert_eq!(config.nodes.ssh_public_key_text.as_deref(), Some(ED25519));
}

#[test]
fn ssh_public_key_problems_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("provision.toml");
    let text = file("k3s", "ssh_public_key = \"missing.pub\"\n", "");
    let error = parse_str(&text, &config_path).unwrap_err();
    let problem = &error.problems()[0];
    assert_eq!(
        (problem.line, problem.key.as_str()),
        (11, "nodes.ssh_public_key")
    );
    let expected = dir.path().join("missing.pub");
    assert!(
        problem
            .message
            .starts_with(&format!("cannot read {}", expected.display())),
        "{}",
        problem.message
    );

    std::fs::write(
        dir.path().join("id"),
        format!("-----BEGIN OPENSSH {}-----\nxyz\n", "PRIVATE KEY"),
    )
    .unwrap();
    let text = file("k3s", "ssh_public_key = \"id\"\n", "");
    let error = parse_str(&text, &config_path).unwrap_err();
    let message = &error.problems()[0].message;
    assert!(
        message.contains(&dir.path().join("id").display().to_string()),
        "{message}"
    );
    assert!(message.contains("private key"), "{message}");

    std::fs::write(
        dir.path().join("bad.pub"),
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP\n",
    )
    .unwrap();
    let text = file("k3s", "ssh_public_key = \"bad.pub\"\n", "");
    let error = parse_str(&text, &config_path).unwrap_err();
    assert!(error.problems()[0].message.contains("ssh-ed25519, ssh-rsa"));
}

/// An OpenSSH public key line of type `kind` whose blob names the same type.
fn key_line(kind: &str) -> String {
    use base64::Engine as _;
    let mut blob = (kind.len() as u32).to_be_bytes().to_vec();
    blob.extend_from_slice(kind.as_bytes());
    blob.extend_from_slice(&[0, 0, 0, 4, 1, 2, 3, 4]);
    let data = base64::engine::general_purpose::STANDARD.encode(blob);
    format!("{kind} {data} me@host")
}

#[test]
fn ssh_key_types_ec2_cannot_import_are_refused_naming_file_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("provision.toml");
    for (kind, what) in [
        ("ecdsa-sha2-nistp256", "ECDSA"),
        ("ecdsa-sha2-nistp384", "ECDSA"),
        ("ecdsa-sha2-nistp521", "ECDSA"),
        ("ssh-dss", "DSA"),
        ("sk-ssh-ed25519@openssh.com", "security-key"),
        ("sk-ecdsa-sha2-nistp256@openssh.com", "security-key"),
        ("ssh-ed25519-cert-v01@openssh.com", "certificate"),
    ] {
        std::fs::write(dir.path().join("id.pub"), key_line(kind)).unwrap();
        let text = file("k3s", "ssh_public_key = \"id.pub\"\n", "");
        let error = parse_str(&text, &config_path).unwrap_err();
        assert_eq!(error.problems().len(), 1, "{kind}: {error}");
        let problem = &error.problems()[0];
        assert_eq!(
            (problem.line, problem.key.as_str()),
            (11, "nodes.ssh_public_key"),
            "{kind}"
        );
        let path = dir.path().join("id.pub").display().to_string();
        let message = &problem.message;
        assert!(message.starts_with(&format!("{path}: ")), "{message}");
        assert!(message.contains(&format!("{kind:?}")), "{message}");
        assert!(message.contains(what), "{message}");
        assert!(
            message.contains("ImportKeyPair accepts only RSA and ED25519"),
            "{message}"
        );
    }
    // The two types EC2 imports.
    for kind in ["ssh-rsa", "ssh-ed25519"] {
        std::fs::write(dir.path().join("id.pub"), key_line(kind)).unwrap();
        let text = file("k3s", "ssh_public_key = \"id.pub\"\n", "");
        let config = parse_str(&text, &config_path).unwrap();
        assert_eq!(config.nodes.ssh_public_key_text, Some(key_line(kind)));
    }
    // An unknown type says what was found.
    std::fs::write(dir.path().join("id.pub"), key_line("ssh-foo")).unwrap();
    let text = file("k3s", "ssh_public_key = \"id.pub\"\n", "");
    let error = parse_str(&text, &config_path).unwrap_err();
    assert!(
        error.problems()[0].message.contains("(found \"ssh-foo\")"),
        "{error}"
    );
}

// ---- datastore -------------------------------------------------------------------------------

#[test]
fn datastore_only_for_k3s() {
    for topology in ["rke", "docker"] {
        let text = file(topology, "", "\n[datastore]\nengine_version = \"8.0\"\n");
        let problem = one_problem(&text, 12, "datastore");
        assert!(
            problem
                .message
                .starts_with("[datastore] is only used by topology k3s"),
            "{}",
            problem.message
        );
        assert_eq!(problem.column, 2);
    }
}

#[test]
fn datastore_values_override_defaults() {
    let text = file(
        "k3s",
        "",
        "[datastore]\nengine_version = \"8.4.3\"\ninstance_class = \"db.r6g.large\"\n\
         storage_gb = 100\ndatabase = \"rancher_k3s\"\nusername = \"k3sadmin\"\n\
         backup_retention_days = 14\n",
    );
    let datastore = ok(&text).datastore.unwrap();
    assert_eq!(datastore.engine_version, "8.4.3");
    assert_eq!(datastore.instance_class, "db.r6g.large");
    assert_eq!(datastore.storage_gb, 100);
    assert_eq!(datastore.database, "rancher_k3s");
    assert_eq!(datastore.username, "k3sadmin");
    assert_eq!(datastore.backup_retention_days, 14);
}

#[test]
fn mysql_5_7_is_accepted_with_an_extended_support_warning() {
    let text = file("k3s", "", "[datastore]\nengine_version = \"5.7\"\n");
    let config = ok(&text);
    assert_eq!(config.datastore.unwrap().engine_version, "5.7");
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("5.7") && w.contains("Extended Support")),
        "{:?}",
        config.warnings
    );
    let config = ok(&file("k3s", "", "[datastore]\nengine_version = \"8.4\"\n"));
    assert!(!config
        .warnings
        .iter()
        .any(|w| w.contains("Extended Support")));
}

#[test]
fn mysql_8_0_is_accepted_with_a_warning_naming_the_extended_support_surcharge() {
    let config = ok(&file(
        "k3s",
        "",
        "[datastore]\nengine_version = \"8.0.39\"\n",
    ));
    assert_eq!(config.datastore.unwrap().engine_version, "8.0.39");
    let warning = config
        .warnings
        .iter()
        .find(|w| w.contains("engine_version"))
        .expect("a warning about the engine version");
    for part in [
        "datastore.engine_version",
        "MySQL 8.0.39",
        "31 July 2026",
        "Extended Support",
        "surcharge",
        "\"8.4\"",
    ] {
        assert!(warning.contains(part), "{part}: {warning}");
    }
}

#[test]
fn every_bad_datastore_value_is_reported() {
    let text = file(
        "k3s",
        "",
        "[datastore]\nengine_version = \"9.0\"\ninstance_class = \"t3.medium\"\n\
         storage_gb = 10\ndatabase = \"k3s-db\"\nusername = \"rdsadmin\"\n\
         backup_retention_days = 0\n",
    );
    let all = problems(&text);
    let located: Vec<(usize, &str)> = all.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        located,
        vec![
            (12, "datastore.engine_version"),
            (13, "datastore.instance_class"),
            (14, "datastore.storage_gb"),
            (15, "datastore.database"),
            (16, "datastore.username"),
            (17, "datastore.backup_retention_days"),
        ]
    );
    assert!(all[4].message.contains("reserved"));
}

// ---- load balancer ---------------------------------------------------------------------------

#[test]
fn load_balancer_enabled_only_for_docker() {
    for topology in ["k3s", "rke"] {
        let text = file(topology, "", "[load_balancer]\nenabled = true\n");
        let problem = one_problem(&text, 12, "load_balancer.enabled");
        assert!(problem
            .message
            .starts_with("only applies to topology docker"));
    }
}

#[test]
fn docker_kube_api_cannot_be_enabled() {
    let text = file("docker", "", "[load_balancer]\nkube_api = true\n");
    let problem = one_problem(&text, 12, "load_balancer.kube_api");
    assert!(problem.message.contains("no Kubernetes API"));
}

#[test]
fn disabled_docker_load_balancer_rejects_its_settings() {
    let text = file(
        "docker",
        "",
        "[load_balancer]\nenabled = false\nscheme = \"internal\"\n",
    );
    let problem = one_problem(&text, 13, "load_balancer.scheme");
    assert!(problem.message.contains("enabled = false"));
}

#[test]
fn bad_scheme_lists_the_choices() {
    let text = file("k3s", "", "[load_balancer]\nscheme = \"public\"\n");
    let problem = one_problem(&text, 12, "load_balancer.scheme");
    assert_eq!(
        problem.message,
        "expected one of \"internal\", \"internet-facing\" (got \"public\")"
    );
}

// ---- dns ---------------------------------------------------------------------------------------

#[test]
fn dns_values() {
    let text = file("k3s", "", "").replace(
        "zone = \"lab.example.com\"",
        "zone = \"Lab.Example.com.\"\nprivate_zone = true\nttl = 300\nrecord_type = \"cname\"",
    );
    let dns = ok(&text).dns;
    assert_eq!(dns.zone, "lab.example.com");
    assert!(dns.private_zone);
    assert_eq!(dns.ttl, 300);
    assert_eq!(dns.record_type, RecordType::Cname);
}

#[test]
fn dns_problems() {
    let text = file("k3s", "", "").replace(
        "zone = \"lab.example.com\"",
        "zone = \"Z0123456789ABCDEFGHIJ\"\nprivate_zone = true\nttl = 0\nrecord_type = \"A\"",
    );
    let all = problems(&text);
    let located: Vec<(usize, &str)> = all.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        located,
        vec![(7, "dns.zone"), (9, "dns.ttl"), (10, "dns.record_type")]
    );
    assert!(all[0].message.contains("not a hosted zone id"));

    let text = file("k3s", "", "").replace("zone = \"lab.example.com\"", "zone = \"\"");
    assert_eq!(
        one_problem(&text, 7, "dns.zone").message,
        "must not be empty"
    );

    let text = file("k3s", "", "").replace("\"lab.example.com\"", "\"lab example\"");
    one_problem(&text, 7, "dns.zone");
}

#[test]
fn cname_at_the_zone_apex_is_refused_at_record_type() {
    let apex = |topology: &str, rest: &str| {
        file(topology, "", rest)
            .replace("rancher.lab.example.com", "lab.example.com")
            .replace(
                "zone = \"lab.example.com\"",
                "zone = \"lab.example.com\"\nrecord_type = \"cname\"",
            )
    };
    let text = apex("k3s", "");
    let problem = one_problem(&text, 8, "dns.record_type");
    assert!(
        problem.message.contains("CNAME cannot be at the zone apex")
            && problem.message.contains("\"lab.example.com\"")
            && problem.message.contains("record_type = \"alias\""),
        "{}",
        problem.message
    );
    // Also in a private zone the tool creates.
    let private = apex("rke", "").replace(
        "record_type = \"cname\"",
        "record_type = \"cname\"\nprivate_zone = true",
    );
    one_problem(&private, 8, "dns.record_type");
    // An alias at the apex is fine, and so is a CNAME below it.
    ok(&apex("k3s", "").replace("\"cname\"", "\"alias\""));
    ok(&file("k3s", "", "").replace(
        "zone = \"lab.example.com\"",
        "zone = \"lab.example.com\"\nrecord_type = \"cname\"",
    ));
    // Without a load balancer the record is an A record whatever record_type says.
    ok(&apex("docker", "[load_balancer]\nenabled = false\n"));
    // With a zone id the zone's name (and so its apex) is unknown before the cloud is asked.
    ok(&apex("k3s", "").replace(
        "zone = \"lab.example.com\"",
        "zone = \"Z0123456789ABCDEFGHIJ\"",
    ));
}

// ---- registry ------------------------------------------------------------------------------

#[test]
fn external_registry_with_relative_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
    let text = file(
        "k3s",
        "",
        "[registry]\nmode = \"external\"\nurl = \"registry.corp.example:5000\"\nca_file = \"ca.pem\"\n",
    );
    let config = parse_str(&text, &dir.path().join("provision.toml")).unwrap();
    match config.registry {
        Registry::External {
            url,
            ca_file,
            ca_pem,
        } => {
            assert_eq!(url, "registry.corp.example:5000");
            assert_eq!(ca_file, Some(dir.path().join("ca.pem")));
            assert_eq!(ca_pem.as_deref(), Some(pem));
        }
        other => panic!("expected an external registry, got {other:?}"),
    }
}

#[test]
fn external_registry_problems() {
    let text = file(
        "k3s",
        "",
        "[registry]\nmode = \"external\"\nurl = \"https://registry.corp.example:5000\"\n\
         port = 5000\nca_file = \"nothing.pem\"\n",
    );
    let all = problems(&text);
    let located: Vec<(usize, &str)> = all.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        located,
        vec![
            (13, "registry.url"),
            (14, "registry.port"),
            (15, "registry.ca_file")
        ]
    );
    assert!(
        all[0].message.contains("\"registry.corp.example:5000\""),
        "{}",
        all[0].message
    );
    assert_eq!(all[1].message, "only applies to mode = \"node\"");
    assert!(all[2].message.contains("nothing.pem"));

    let text = file("k3s", "", "[registry]\nmode = \"external\"\n");
    let problem = one_problem(&text, 11, "registry.url");
    assert!(problem
        .message
        .starts_with("required with mode = \"external\""));
}

#[test]
fn ca_file_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not a cert").unwrap();
    let text = file(
        "k3s",
        "",
        "[registry]\nmode = \"external\"\nurl = \"10.0.0.5\"\nca_file = \"ca.pem\"\n",
    );
    let error = parse_str(&text, &dir.path().join("provision.toml")).unwrap_err();
    let problem = &error.problems()[0];
    assert_eq!(
        (problem.line, problem.key.as_str()),
        (14, "registry.ca_file")
    );
    assert!(problem.message.contains("BEGIN CERTIFICATE"));
}

#[test]
fn node_registry_problems() {
    let text = file(
        "rke",
        "",
        "[registry]\nport = 22\nvolume_gb = 5\nurl = \"r.example.com\"\nmode = \"node\"\n",
    );
    let all = problems(&text);
    let located: Vec<(usize, &str)> = all.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        located,
        vec![
            (12, "registry.port"),
            (13, "registry.volume_gb"),
            (14, "registry.url")
        ]
    );
    assert!(all[0].message.contains("SSH"));
    assert_eq!(all[2].message, "only applies to mode = \"external\"");

    let text = file("rke", "", "[registry]\nport = 70000\n");
    one_problem(&text, 12, "registry.port");
    let text = file("rke", "", "[registry]\nmode = \"mirror\"\n");
    one_problem(&text, 12, "registry.mode");
}

// ---- timeouts --------------------------------------------------------------------------------

#[test]
fn timeouts_must_be_positive_numbers() {
    let text = file(
        "k3s",
        "",
        "[timeouts]\npoll_seconds = 0\ninstance_minutes = -1\ndatabase_minutes = \"60\"\n\
         dns_minutes = 1e9\nload_balancer_minutes = 2.5\n",
    );
    let all = problems(&text);
    let located: Vec<(usize, &str)> = all.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        located,
        vec![
            (12, "timeouts.poll_seconds"),
            (13, "timeouts.instance_minutes"),
            (14, "timeouts.database_minutes"),
            (15, "timeouts.dns_minutes"),
        ]
    );
    assert!(all[0].message.contains("greater than 0 and at most 300"));
    assert!(all[2]
        .message
        .starts_with("expected a number, found a string"));
    let text = file("k3s", "", "[timeouts]\npoll_seconds = 301\n");
    one_problem(&text, 12, "timeouts.poll_seconds");
}

// ---- many problems at once -------------------------------------------------------------------

#[test]
fn problems_from_every_section_are_reported_together_in_order() {
    let text = "name = \"lab\"\n\
                region = \"mars-1\"\n\
                topology = \"rke\"\n\
                hostname = \"rancher.lab.example.com\"\n\
                flavour = 1\n\
                [network]\n\
                vpc_cidr = \"10.42.0.1/16\"\n\
                [nodes]\n\
                count = 2\n\
                ami = \"ami-0123456789abcdef0\"\n\
                [datastore]\n\
                [load_balancer]\n\
                enabled = false\n\
                [dns]\n\
                zone = \"lab.example.com\"\n\
                ttl = 0\n\
                [registry]\n\
                port = 0\n\
                [timeouts]\n\
                dns_minutes = 0\n";
    let error = parse(text).unwrap_err();
    let located: Vec<(usize, &str)> = error
        .problems()
        .iter()
        .map(|p| (p.line, p.key.as_str()))
        .collect();
    assert_eq!(
        located,
        vec![
            (2, "region"),
            (5, "flavour"),
            (7, "network.vpc_cidr"),
            (9, "nodes.count"),
            (11, "datastore"),
            (13, "load_balancer.enabled"),
            (16, "dns.ttl"),
            (18, "registry.port"),
            (20, "timeouts.dns_minutes"),
        ]
    );
    let display = error.to_string();
    assert_eq!(display.lines().count(), 9);
    assert!(display
        .lines()
        .all(|line| line.starts_with("provision.toml:")));
    assert_eq!(line_of(text, "ttl"), 16);
}

#[test]
fn unknown_topology_still_reports_other_problems() {
    let text = file("kubernetes", "count = 2\n", "[datastore]\nstorage_gb = 1\n");
    let all = problems(&text);
    let keys: Vec<&str> = all.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["topology", "datastore.storage_gb"]);
}

// ---- generated AWS names -------------------------------------------------------------------

fn named(name: &str, topology: &str, rest: &str) -> String {
    file(topology, "", rest).replace("name = \"lab\"", &format!("name = {name:?}"))
}

#[test]
fn env_names_that_make_invalid_aws_names_are_refused_at_name() {
    // (name, problems at `name`, text each message holds)
    for (name, count, generated, rule) in [
        (
            "lab-",
            2,
            "RDS instance identifier \"lab--datastore\"",
            "two consecutive hyphens",
        ),
        (
            "a--b",
            2,
            "RDS instance identifier \"a--b-datastore\"",
            "two consecutive hyphens",
        ),
        (
            "sg",
            4,
            "security group name \"sg-sg-nodes\"",
            "begins with \"sg-\"",
        ),
        (
            "internal",
            1,
            "load balancer name \"internal-nlb\"",
            "begins with \"internal-\"",
        ),
    ] {
        let text = named(name, "k3s", "");
        let error = parse(&text).unwrap_err();
        let all = error.problems();
        assert_eq!(all.len(), count, "{name}: {error}");
        assert!(
            all.iter()
                .all(|p| (p.line, p.column, p.key.as_str()) == (1, 1, "name")),
            "{name}: {error}"
        );
        let first = error.to_string().lines().next().unwrap().to_string();
        assert!(
            first.starts_with(&format!("provision.toml:1:1: name: {name:?} makes the ")),
            "{first}"
        );
        assert!(first.contains(generated), "{first}");
        assert!(first.contains("which AWS refuses"), "{first}");
        assert!(first.contains(rule), "{first}");
    }
    let error = parse(&named("lab-", "k3s", "")).unwrap_err().to_string();
    assert!(
        error.contains("RDS final snapshot identifier \"lab--final-"),
        "{error}"
    );
    let error = parse(&named("sg", "k3s", "")).unwrap_err().to_string();
    for group in ["sg-nodes", "sg-registry", "sg-lb", "sg-datastore"] {
        assert!(error.contains(&format!("\"sg-{group}\"")), "{error}");
    }
}

#[test]
fn names_are_checked_only_where_the_config_makes_them() {
    // rke has no RDS: "lab-" makes no identifier with "--" that AWS refuses.
    ok(&named("lab-", "rke", ""));
    ok(&named("a--b", "docker", ""));
    // docker without a load balancer makes no load balancer name.
    ok(&named(
        "internal",
        "docker",
        "[load_balancer]\nenabled = false\n",
    ));
    one_problem(&named("internal", "docker", ""), 1, "name");
    // Without a node registry there is no sg-registry.
    let external = "[registry]\nmode = \"external\"\nurl = \"registry.corp.example:5000\"\n";
    let text = named(
        "sg",
        "docker",
        &format!("[load_balancer]\nenabled = false\n{external}"),
    );
    let problem = one_problem(&text, 1, "name");
    assert!(
        problem.message.contains("\"sg-sg-nodes\""),
        "{}",
        problem.message
    );
    assert_eq!(problems(&named("sg", "docker", "")).len(), 3);
}

#[test]
fn name_problems_are_reported_with_every_other_problem() {
    let text = named("lab-", "k3s", "[datastore]\nstorage_gb = 1\n").replace("us-east-1", "mars");
    let all = problems(&text);
    let keys: Vec<&str> = all.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["name", "name", "region", "datastore.storage_gb"]);
}

#[test]
fn a_hostname_whose_owner_marker_is_too_long_is_refused_at_hostname() {
    // 248 characters: a valid DNS name, but `_provision-owner.<hostname>` has 265.
    let host = format!(
        "{}.{}.lab.example.com",
        vec!["h".repeat(63); 3].join("."),
        "h".repeat(40)
    );
    assert_eq!(host.len(), 248);
    let text = file("k3s", "", "").replace("rancher.lab.example.com", &host);
    let problem = one_problem(&text, 4, "hostname");
    assert!(
        problem
            .message
            .contains("Route53 record name \"_provision-owner.hhh")
            && problem
                .message
                .contains("265 characters long (at most 253)"),
        "{}",
        problem.message
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any name of the contract's shape (`[a-z][a-z0-9-]{1,20}`), with the prefixes and
    /// hyphens that trip AWS's rules made likely: the config accepts it exactly when every
    /// name this configuration makes is valid, and refuses it only at `name`.
    #[test]
    fn accepted_env_names_make_only_valid_aws_names(
        name in prop_oneof![
            "[a-z][a-z0-9-]{1,20}",
            "(sg|internal|ab)-{0,2}[a-z0-9-]{0,8}-{0,2}",
        ],
        topology in prop_oneof![Just("k3s"), Just("rke"), Just("docker")],
        with_lb in any::<bool>(),
    ) {
        let rest = if topology == "docker" && !with_lb {
            "[load_balancer]\nenabled = false\n"
        } else {
            ""
        };
        let text = named(&name, topology, rest);
        // The names the AWS adapters would make for this topology, built directly.
        let mut made = vec![
            (crate::names::NameRule::SecurityGroup, crate::names::security_group(&name, "sg-nodes")),
        ];
        if topology != "docker" || with_lb {
            made.push((crate::names::NameRule::LoadBalancer, crate::names::load_balancer(&name)));
            for port in [80, 443, 6443] {
                made.push((crate::names::NameRule::TargetGroup, crate::names::target_group(&name, port)));
            }
        }
        if topology == "k3s" {
            made.push((crate::names::NameRule::DbInstance, crate::names::db_instance(&name)));
            made.push((crate::names::NameRule::DbSubnetGroup, crate::names::db_subnet_group(&name)));
            made.push((
                crate::names::NameRule::DbSnapshot,
                crate::names::final_snapshot(&name, chrono::Utc::now()),
            ));
        }
        let all_valid = made.iter().all(|(rule, made)| rule.check(made).is_ok());
        match parse(&text) {
            Ok(config) => {
                prop_assert!(all_valid, "accepted {name:?} but it makes {made:?}");
                for generated in crate::names::generated(&crate::names::Inputs::of(&config)) {
                    prop_assert_eq!(generated.rule.check(&generated.name), Ok(()), "{:?}", generated);
                }
            }
            Err(error) => {
                prop_assert!(!all_valid, "refused {name:?}: {error}");
                prop_assert!(error.problems().iter().all(|p| p.key == "name"), "{error}");
            }
        }
    }
}

// ---- robustness ------------------------------------------------------------------------------

/// Every problem must point inside the file (or at the whole file).
fn assert_located_inside(text: &str, result: Result<Config, ConfigError>) {
    if let Err(error) = result {
        assert!(!error.problems().is_empty());
        let lines = text.split('\n').count();
        for problem in error.problems() {
            let whole_file = (problem.line, problem.column) == (0, 0);
            assert!(
                whole_file || (problem.line >= 1 && problem.line <= lines && problem.column >= 1),
                "{problem:?} outside a {lines}-line file"
            );
            assert!(!problem.message.is_empty());
            assert!(!problem.message.contains('\n'), "{problem:?}");
        }
    }
}

fn valid_file() -> String {
    file(
        "k3s",
        "count = 3\nssh_user = \"ubuntu\"\n",
        "[network]\nadmin_cidrs = [\"10.0.0.0/8\"]\n[datastore]\nengine_version = \"8.4\"\n\
         [registry]\nport = 5000\n[timeouts]\npoll_seconds = 2.5\n",
    )
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, String),
    Delete(usize, usize),
    DropLine(usize),
    DuplicateLine(usize),
    ReplaceValue(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        Just("\"".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("=".to_string()),
        Just("\n".to_string()),
        Just(".".to_string()),
        Just("-1".to_string()),
        Just("é".to_string()),
        "[ -~]{0,8}",
        "\\PC{0,4}",
    ];
    let value = prop_oneof![
        Just("\"\"".to_string()),
        Just("0".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("99999999999999999999".to_string()),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        Just("1e308".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("[1, \"a\", {}]".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("\"~/x\"".to_string()),
        Just("\"5.7\"".to_string()),
        Just("\"https://x\"".to_string()),
        "\"[ -~&&[^\"\\\\]]{0,12}\"",
        "-?[0-9]{1,12}",
    ];
    prop_oneof![
        (any::<usize>(), token).prop_map(|(at, text)| Mutation::Insert(at, text)),
        (any::<usize>(), 0usize..6).prop_map(|(at, len)| Mutation::Delete(at, len)),
        any::<usize>().prop_map(Mutation::DropLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), value).prop_map(|(line, value)| Mutation::ReplaceValue(line, value)),
    ]
}

fn apply(text: &str, mutation: &Mutation) -> String {
    let boundary = |at: usize| {
        let mut at = at % (text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match mutation {
        Mutation::Insert(at, insert) => {
            let at = boundary(*at);
            format!("{}{insert}{}", &text[..at], &text[at..])
        }
        Mutation::Delete(at, len) => {
            let start = boundary(*at);
            let end = boundary(start + len).max(start);
            format!("{}{}", &text[..start], &text[end..])
        }
        Mutation::DropLine(at) => {
            lines.remove(at % lines.len());
            lines.join("\n")
        }
        Mutation::DuplicateLine(at) => {
            let at = at % lines.len();
            lines.insert(at, lines[at].clone());
            lines.join("\n")
        }
        Mutation::ReplaceValue(at, value) => {
            let at = at % lines.len();
            if let Some((key, _)) = lines[at].split_once(" = ") {
                lines[at] = format!("{key} = {value}");
            }
            lines.join("\n")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let result = parse(&text);
        assert_located_inside(&text, result);
    }

    #[test]
    fn arbitrary_toml_like_text_never_panics(text in "([a-z_\\[\\]\\.=\" 0-9{},-]{0,20}\n){0,12}") {
        let result = parse(&text);
        assert_located_inside(&text, result);
    }

    #[test]
    fn mutated_valid_files_never_panic(mutations in prop::collection::vec(mutation(), 1..5)) {
        let mut text = valid_file();
        for mutation in &mutations {
            text = apply(&text, mutation);
        }
        let result = parse(&text);
        assert_located_inside(&text, result);
    }

    #[test]
    fn mutated_templates_never_panic(
        topology in prop_oneof![Just(Topology::K3s), Just(Topology::Rke), Just(Topology::Docker)],
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut text = uncomment_defaults(&template(topology));
        for mutation in &mutations {
            text = apply(&text, mutation);
        }
        let result = parse(&text);
        assert_located_inside(&text, result);
    }
}

#[test]
fn the_valid_file_used_for_mutations_is_valid() {
    let config = ok(&valid_file());
    assert_eq!(config.nodes.count, 3);
    assert!(config.warnings.is_empty());
}

// ---- rke2, datastore engines, Rancher version ----------------------------------------------

#[test]
fn minimal_rke2_resolves_with_defaults() {
    let config = ok(&file("rke2", "", ""));
    assert_eq!(config.topology, Topology::Rke2);
    assert_eq!(config.nodes.count, 3);
    assert_eq!(config.nodes.instance_type, "t3.large");
    assert!(config.datastore.is_none());
    assert!(!config.k3s_embedded_etcd());
    let lb = config.load_balancer.expect("rke2 has a load balancer");
    assert!(lb.kube_api && lb.supervisor);
    assert!(
        !config.warnings.iter().any(|w| w.contains("RKE1")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn rke2_needs_an_odd_server_count_of_at_least_three() {
    for n in [0, 1, 2, 4, 6] {
        let text = file("rke2", &format!("count = {n}\n"), "");
        let problem = one_problem(&text, 11, "nodes.count");
        assert!(
            problem.message.contains("odd server count of at least 3"),
            "{problem:?}"
        );
        assert_eq!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .lines()
                .next()
                .unwrap(),
            format!("provision.toml:11:1: nodes.count: {}", problem.message)
        );
    }
    for n in [3, 5, 7, 9] {
        assert_eq!(
            ok(&file("rke2", &format!("count = {n}\n"), "")).nodes.count,
            n
        );
    }
    one_problem(&file("rke2", "count = 11\n", ""), 11, "nodes.count");
}

#[test]
fn rke2_refuses_what_does_not_apply() {
    let problem = one_problem(
        &file("rke2", "", "[load_balancer]\nkube_api = false\n"),
        12,
        "load_balancer.kube_api",
    );
    assert!(problem.message.contains("9345"), "{problem:?}");
    one_problem(
        &file("rke2", "", "[load_balancer]\nenabled = true\n"),
        12,
        "load_balancer.enabled",
    );
    let problem = one_problem(
        &file("rke2", "", "[datastore]\nengine = \"mysql\"\n"),
        11,
        "datastore",
    );
    assert!(
        problem.message.contains("only used by topology k3s"),
        "{problem:?}"
    );
}

#[test]
fn rke_warns_that_rke1_is_end_of_life_and_points_to_rke2() {
    let config = ok(&file(
        "rke",
        "",
        "[network]\nadmin_cidrs = [\"10.0.0.0/8\"]\n",
    ));
    let warning = &config.warnings[0];
    for part in ["RKE1", "end of life", "31 July 2025", "topology = \"rke2\""] {
        assert!(warning.contains(part), "{part}: {warning}");
    }
    for topology in ["k3s", "rke2", "docker"] {
        let config = ok(&file(topology, "", ""));
        assert!(
            !config.warnings.iter().any(|w| w.contains("RKE1")),
            "{topology}: {:?}",
            config.warnings
        );
    }
}

#[test]
fn rke1_with_rancher_2_12_or_later_warns_with_the_versions_that_work() {
    let config = ok(&file("rke", "", ""));
    let warning = config
        .warnings
        .iter()
        .find(|w| w.contains("cannot run on this RKE1 cluster"))
        .unwrap_or_else(|| panic!("{:?}", config.warnings));
    for part in [
        "version = \"2.14.0\"",
        "2.11, 2.10 and 2.9",
        "topology = \"rke2\"",
    ] {
        assert!(warning.contains(part), "{part}: {warning}");
    }
    let config = ok(&file("rke", "", "[rancher]\nversion = \"2.11.0\"\n"));
    assert!(
        !config
            .warnings
            .iter()
            .any(|w| w.contains("cannot run on this RKE1")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn docker_and_rke_say_the_ami_must_carry_docker() {
    for topology in ["rke", "docker"] {
        let config = ok(&file(topology, "", ""));
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("nodes.ami must be an image that already carries Docker")),
            "{topology}: {:?}",
            config.warnings
        );
    }
    for topology in ["k3s", "rke2"] {
        let config = ok(&file(topology, "", ""));
        assert!(
            !config.warnings.iter().any(|w| w.contains("carries Docker")),
            "{topology}: {:?}",
            config.warnings
        );
    }
}

#[test]
fn postgres_datastore_defaults_and_checks() {
    let config = ok(&file("k3s", "", "[datastore]\nengine = \"postgres\"\n"));
    let datastore = config.datastore.unwrap();
    assert_eq!(datastore.engine, crate::model::DbEngine::Postgres);
    assert_eq!(datastore.engine_version, "15");
    assert_eq!(
        datastore.username, "k3s",
        "RDS refuses admin for PostgreSQL"
    );
    assert_eq!(config.nodes.count, 2);

    let problem = one_problem(
        &file(
            "k3s",
            "",
            "[datastore]\nengine = \"postgres\"\nengine_version = \"8.4\"\n",
        ),
        13,
        "datastore.engine_version",
    );
    assert!(problem.message.contains("PostgreSQL"), "{problem:?}");
    one_problem(
        &file(
            "k3s",
            "",
            "[datastore]\nengine = \"postgres\"\nusername = \"admin\"\n",
        ),
        13,
        "datastore.username",
    );
    let config = ok(&file(
        "k3s",
        "",
        "[datastore]\nengine = \"postgres\"\nengine_version = \"13.16\"\n",
    ));
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("PostgreSQL 13.16") && w.contains("Extended Support")),
        "{:?}",
        config.warnings
    );
    // MySQL versions are not PostgreSQL versions and the other way round.
    one_problem(
        &file("k3s", "", "[datastore]\nengine_version = \"15\"\n"),
        12,
        "datastore.engine_version",
    );
}

#[test]
fn embedded_etcd_has_no_rds_and_an_odd_server_count() {
    let text = file("k3s", "", "[datastore]\nengine = \"embedded-etcd\"\n");
    let config = ok(&text);
    assert!(config.datastore.is_none());
    assert!(config.k3s_embedded_etcd());
    assert_eq!(config.nodes.count, 3, "3 servers by default");
    for n in [1, 2, 4] {
        let text = file(
            "k3s",
            &format!("count = {n}\n"),
            "[datastore]\nengine = \"embedded-etcd\"\n",
        );
        let problem = one_problem(&text, 11, "nodes.count");
        assert!(problem.message.contains("odd server count"), "{problem:?}");
    }
    assert_eq!(
        ok(&file(
            "k3s",
            "count = 5\n",
            "[datastore]\nengine = \"embedded-etcd\"\n"
        ))
        .nodes
        .count,
        5
    );
    // Without RDS, one zone is enough.
    ok(&file(
        "k3s",
        "",
        "[network]\nzones = 1\n[datastore]\nengine = \"embedded-etcd\"\n",
    ));
    // RDS settings have no effect: each is refused where it is written.
    let problem = one_problem(
        &file(
            "k3s",
            "",
            "[datastore]\nengine = \"embedded-etcd\"\nengine_version = \"8.4\"\n",
        ),
        13,
        "datastore.engine_version",
    );
    assert!(problem.message.contains("embedded-etcd"), "{problem:?}");
}

#[test]
fn unknown_datastore_engine_lists_the_choices() {
    let problem = one_problem(
        &file("k3s", "", "[datastore]\nengine = \"sqlite\"\n"),
        12,
        "datastore.engine",
    );
    for choice in ["\"mysql\"", "\"postgres\"", "\"embedded-etcd\""] {
        assert!(problem.message.contains(choice), "{problem:?}");
    }
}

#[test]
fn rancher_version_is_read_and_checked() {
    let config = ok(&file("rke2", "", "[rancher]\nversion = \"v2.13.2\"\n"));
    assert_eq!(config.rancher.version, "2.13.2");
    assert_eq!(config.rancher.minor, 13);
    assert_eq!(config.rancher.tag(), "v2.13.2");
    one_problem(
        &file("rke2", "", "[rancher]\nversion = \"latest\"\n"),
        12,
        "rancher.version",
    );
    one_problem(
        &file("rke2", "", "[rancher]\nchart = \"x\"\n"),
        12,
        "rancher.chart",
    );
}

// ---- [state] ---------------------------------------------------------------------------------

#[test]
fn state_is_local_by_default_and_s3_takes_bucket_key_region_and_kms() {
    assert_eq!(ok(&file("k3s", "", "")).state, StateBackend::Local);
    let config = ok(&file(
        "k3s",
        "",
        "[state]\nbackend = \"s3\"\nbucket = \"team-state\"\n",
    ));
    assert_eq!(
        config.state,
        StateBackend::S3(S3State {
            bucket: "team-state".into(),
            key: "provision/lab.json".into(),
            region: "us-east-1".into(),
            kms_key_id: None,
        })
    );
    let config = ok(&file(
        "k3s",
        "",
        "[state]\nbackend = \"s3\"\nbucket = \"team-state\"\nkey = \"envs/lab/state.json\"\n\
         region = \"eu-west-1\"\nkms_key_id = \"alias/provision\"\n",
    ));
    let StateBackend::S3(s3) = config.state else {
        panic!("not s3")
    };
    assert_eq!(
        (
            s3.key.as_str(),
            s3.region.as_str(),
            s3.kms_key_id.as_deref()
        ),
        ("envs/lab/state.json", "eu-west-1", Some("alias/provision"))
    );
    assert_eq!(s3.lock_key(), "envs/lab/state.json.lock");
}

#[test]
fn s3_state_needs_a_bucket_named_as_s3_allows() {
    let text = file("k3s", "", "[state]\nbackend = \"s3\"\n");
    let p = one_problem(&text, line_of(&text, "[state]"), "state.bucket");
    assert!(p.message.contains("missing"), "{p:#?}");
    for (bucket, says) in [
        ("My_Bucket", "lowercase letters"),
        ("ab", "3 to 63"),
        ("-team", "begin and end"),
        ("team..state", "two dots"),
        ("192.168.1.1", "IP address"),
    ] {
        let text = file(
            "k3s",
            "",
            &format!("[state]\nbackend = \"s3\"\nbucket = \"{bucket}\"\n"),
        );
        let p = one_problem(&text, line_of(&text, "bucket ="), "state.bucket");
        assert!(p.message.contains(says), "{bucket}: {p:#?}");
    }
}

#[test]
fn bad_state_keys_are_located() {
    let base = "[state]\nbackend = \"s3\"\nbucket = \"team-state\"\n";
    for (line, key, says) in [
        (
            "key = \"/abs/path.json\"",
            "state.key",
            "must not begin with /",
        ),
        ("key = \"dir/\"", "state.key", "end with /"),
        ("region = \"europe\"", "state.region", "AWS region"),
        ("kms_key_id = \"my-key\"", "state.kms_key_id", "KMS key"),
        (
            "kms_key_id = \"alias/aws/s3\"",
            "state.kms_key_id",
            "customer managed",
        ),
    ] {
        let text = file("k3s", "", &format!("{base}{line}\n"));
        let p = one_problem(&text, line_of(&text, line), key);
        assert!(p.message.contains(says), "{line}: {p:#?}");
    }
    let text = file("k3s", "", "[state]\nbackend = \"dynamo\"\n");
    let p = one_problem(&text, line_of(&text, "backend"), "state.backend");
    assert!(p.message.contains("\"local\", \"s3\""), "{p:#?}");
    // S3 keys with the local backend are a mistake worth naming.
    let text = file("k3s", "", "[state]\nbucket = \"team-state\"\n");
    let p = one_problem(&text, line_of(&text, "bucket"), "state.bucket");
    assert!(
        p.message.contains("only used with backend = \"s3\""),
        "{p:#?}"
    );
}

#[test]
fn kms_key_forms_s3_and_secrets_manager_accept() {
    for good in [
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "mrk-1234abcd12ab34cd56ef1234567890ab",
        "alias/provision",
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-east-1:111122223333:alias/provision",
    ] {
        assert!(super::checks::kms_key_id(good).is_ok(), "{good}");
    }
}

// ---- [access] ------------------------------------------------------------------------------

#[test]
fn access_mode_defaults_to_bastion_and_reads_ssm() {
    assert_eq!(ok(&file("k3s", "", "")).access, AccessMode::Bastion);
    assert_eq!(
        ok(&file("k3s", "", "[access]\nmode = \"bastion\"\n")).access,
        AccessMode::Bastion
    );
    for topology in ["k3s", "rke2", "docker"] {
        let config = ok(&file(topology, "", "[access]\nmode = \"ssm\"\n"));
        assert_eq!(config.access, AccessMode::Ssm, "{topology}");
    }
}

#[test]
fn a_bad_access_mode_names_the_file_the_line_and_the_key() {
    let text = file("k3s", "", "\n[access]\nmode = \"ssh\"\n");
    let line = line_of(&text, "mode = \"ssh\"");
    let problem = one_problem(&text, line, "access.mode");
    assert_eq!(
        problem.message,
        "expected one of \"bastion\", \"ssm\" (got \"ssh\")"
    );
    let error = parse(&text).unwrap_err().to_string();
    assert_eq!(
        error,
        format!("{FILE}:{line}:1: access.mode: expected one of \"bastion\", \"ssm\" (got \"ssh\")")
    );
    // Wrong type and unknown keys are located too.
    let text = file("k3s", "", "[access]\nmode = 1\nbastion = true\n");
    let all = problems(&text);
    let keys: Vec<(usize, &str)> = all.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        keys,
        vec![
            (line_of(&text, "mode = 1"), "access.mode"),
            (line_of(&text, "bastion = true"), "access.bastion"),
        ]
    );
}

#[test]
fn ssm_access_is_refused_for_rke_at_the_mode_key() {
    let text = file("rke", "", "[access]\nmode = \"ssm\"\n");
    let problem = one_problem(&text, line_of(&text, "mode = \"ssm\""), "access.mode");
    assert!(
        problem.message.contains("rke up") && problem.message.contains("rke2"),
        "{}",
        problem.message
    );
    assert_eq!(
        ok(&file("rke", "", "[access]\nmode = \"bastion\"\n")).access,
        AccessMode::Bastion
    );
}

#[test]
fn the_template_explains_access_modes() {
    for topology in Topology::ALL {
        let text = template(topology);
        assert!(text.contains("[access]"), "{topology:?}");
        assert!(text.contains("# mode = \"bastion\""), "{topology:?}");
    }
}
