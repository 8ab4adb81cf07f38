//! The commented `provision.toml` that `provision init` writes.

use super::types::Topology;

/// A complete, valid config for `topology`: the required keys set to example values, every
/// other key present but commented out with its default and what it does.
pub fn template(topology: Topology) -> String {
    let mut out = String::new();
    out.push_str(&header(topology));
    out.push_str(&network(topology));
    out.push_str(&nodes(topology));
    if topology == Topology::K3s {
        out.push_str(DATASTORE);
    }
    out.push_str(&load_balancer(topology));
    out.push_str(DNS);
    out.push_str(REGISTRY);
    out.push_str(&access(topology));
    out.push_str(TIMEOUTS);
    out.push_str(&rancher());
    out
}

fn header(topology: Topology) -> String {
    let summary = match topology {
        Topology::K3s => {
            "2 K3s server nodes with an RDS MySQL datastore behind a network load balancer"
        }
        Topology::Rke => {
            "3 RKE nodes (etcd on the nodes) behind a network load balancer. RKE1 is end of \
             life since July 2025: prefer rke2"
        }
        Topology::Docker => "1 node running Rancher in Docker",
        Topology::Rke2 => {
            "3 RKE2 server nodes (etcd on the servers) behind a network load balancer"
        }
    };
    format!(
        r#"# provision.toml: the AWS infrastructure for an air-gapped Rancher server.
# Topology {topology}: {summary}.
# Commented-out keys show their default. Check the file with `provision validate`.

# Prefixes every cloud name and tag: a lowercase letter, then 1 to 20 of a-z, 0-9, '-'.
# Every AWS name it makes must be valid: no "--" or trailing '-' with k3s (RDS), not "sg"
# (security groups cannot begin "sg-"), not "internal" with a load balancer.
name = "lab"
# AWS region to build in (wins over AWS_REGION).
region = "us-east-1"
# k3s | rke2 | rke (RKE1, end of life) | docker.
topology = "{topology}"
# The Rancher URL. It must be inside dns.zone and cannot change after Rancher is installed.
hostname = "rancher.lab.example.com"
"#,
        topology = topology.as_str(),
    )
}

fn network(topology: Topology) -> String {
    let zones_note = match topology {
        Topology::K3s => "\n# k3s needs at least 2: its RDS subnet group spans two zones.",
        Topology::Rke | Topology::Docker | Topology::Rke2 => "",
    };
    format!(
        r#"
[network]
# The VPC's IPv4 network, /16 to /24; the subnets are carved out of it.
# vpc_cidr = "10.42.0.0/16"
# How many availability zones (one private subnet each), 1 to 6.{zones_note}
# zones = 2
# Who may reach SSH on the bastion, the registry and the load balancer (IPv4 CIDRs).
# Empty means only hosts inside the VPC can.
# admin_cidrs = ["203.0.113.0/24"]
"#
    )
}

fn nodes(topology: Topology) -> String {
    let (count_note, instance_type) = match topology {
        Topology::K3s => (
            "1 to 9 K3s server nodes (an odd number from 3 with datastore.engine = \
             \"embedded-etcd\", default 3 then)",
            "t3.large",
        ),
        Topology::Rke2 => (
            "an odd number of RKE2 servers from 3 to 9, for etcd quorum",
            "t3.large",
        ),
        Topology::Rke => ("an odd number from 3 to 9, for etcd quorum", "t3.large"),
        Topology::Docker => ("exactly 1 for docker", "t3.medium"),
    };
    let count = topology.default_node_count();
    let docker = match topology {
        Topology::Rke | Topology::Docker => {
            "\n# This topology runs on Docker, which an air-gapped node cannot install: the image\n\
             # must already carry Docker (a version RKE1 / Rancher's single-node install supports)."
        }
        Topology::K3s | Topology::Rke2 => "",
    };
    format!(
        r#"
[nodes]
# Image for the cluster nodes and the registry host (required). Use one that exists in
# the region, such as a current Ubuntu LTS image.{docker}
ami = "ami-0123456789abcdef0"
# Number of cluster nodes: {count_note}.
# count = {count}
# EC2 instance type of the cluster nodes.
# instance_type = "{instance_type}"
# Root volume size of each node, in GiB (20 to 16384).
# root_volume_gb = 50
# OpenSSH public key installed on every host; a relative path is taken from this file's folder.
# RSA or ED25519 only: EC2 imports no other key type.
# ssh_public_key = "~/.ssh/id_ed25519.pub"
# Login user of the image, used in the generated next-step files.
# ssh_user = "ubuntu"
"#
    )
}

const DATASTORE: &str = r#"
[datastore]
# The K3s datastore: "mysql" (RDS MySQL), "postgres" (RDS PostgreSQL) or "embedded-etcd"
# (no RDS: the servers run etcd; an odd server count, 3 by default). Changing it on a
# built environment replaces the database: its data is lost (apply --allow-data-loss).
# engine = "mysql"
# The engine version. MySQL: "8.4" (or a full version such as "8.4.8"); "8.0" and "5.7"
# work but RDS bills them as Extended Support. PostgreSQL: "15" by default, "14" to "17";
# "11" to "13" are Extended Support.
# engine_version = "8.4"
# RDS instance class.
# instance_class = "db.t3.medium"
# Allocated storage in GiB (20 to 65536). It only grows, by at least 10% at a time.
# storage_gb = 20
# Database K3s uses.
# database = "k3s"
# Master user name (not "rdsadmin", which RDS reserves; nor "admin" with PostgreSQL,
# whose default is "k3s").
# username = "admin"
# Days of automated backups (1 to 35).
# backup_retention_days = 7
"#;

fn load_balancer(topology: Topology) -> String {
    let specific = match topology {
        Topology::Docker => {
            r#"# Put a load balancer in front of the node; false points DNS straight at the node.
# enabled = true
"#
        }
        Topology::Rke2 => {
            r#"# TCP 6443 (the Kubernetes API) and 9345 (the RKE2 supervisor) are always forwarded.
"#
        }
        Topology::K3s | Topology::Rke => {
            r#"# Also forward TCP 6443 (the Kubernetes API) to the nodes.
# kube_api = true
"#
        }
    };
    format!(
        r#"
[load_balancer]
# "internal" (reachable inside the VPC) or "internet-facing".
# scheme = "internal"
{specific}"#
    )
}

const DNS: &str = r#"
[dns]
# An existing Route53 hosted zone, by name or by id (Z...) (required); with
# private_zone enabled, the name of the private zone to create.
zone = "lab.example.com"
# true: create a private hosted zone with this name, attached to the VPC.
# private_zone = false
# Record TTL in seconds (1 to 86400).
# ttl = 60
# "alias" (an A alias to the load balancer) or "cname" (not when hostname is the zone).
# record_type = "alias"
"#;

const REGISTRY: &str = r#"
[registry]
# "node": a registry host in the edge subnet, also the SSH bastion.
# "external": a registry you already run (set url, and ca_file if its CA is private).
# mode = "node"
# Instance type of the registry host.
# instance_type = "t3.medium"
# Size of the image volume in GiB (at least 20).
# volume_gb = 200
# Port the registry listens on (not 22).
# port = 5000
# For mode = "external": host:port, without https://.
# url = "registry.example.com:5000"
# For mode = "external": PEM file of the CA that signed the registry's certificate.
# ca_file = "registry-ca.pem"
"#;

fn access(topology: Topology) -> String {
    let rke = if topology == Topology::Rke {
        "\n# rke needs SSH to every node from where `rke up` runs: bastion only."
    } else {
        ""
    };
    format!(
        r#"
[access]
# How you reach the machines. "bastion": SSH through the registry host (port 22 from
# network.admin_cidrs). "ssm": AWS Systems Manager through VPC endpoints, an instance
# profile on every machine and no SSH port open anywhere (the AMI needs the SSM agent).{rke}
# mode = "bastion"
"#
    )
}

fn rancher() -> String {
    format!(
        r#"
[rancher]
# The Rancher release to install: shapes the helm command (up to 2.13 rancherImage, from
# 2.14 image.registry) and the image lists named in the artifacts.
# version = "{}"

[state]
# Where the state lives: "local" (state/<name>.json under --state-dir) or "s3" (one shared
# state for a team or CI, locked with an S3 lock object; the registry CA, its password and
# the cluster token then live in Secrets Manager, where teammates' runs find them).
# backend = "local"
# bucket = "my-team-provision-state"   # s3 only: an existing bucket (versioning on)
# key = "provision/<name>.json"        # s3 only
# region = "<region above>"            # s3 only: the bucket's region
# kms_key_id = "alias/provision"       # s3 only: SSE-KMS for the state and the secrets
"#,
        super::resolve::DEFAULT_RANCHER_VERSION
    )
}

const TIMEOUTS: &str = r#"
[timeouts]
# Seconds between status checks while waiting for AWS (more than 0, at most 300).
# poll_seconds = 5
# Minutes to wait for each kind of resource before giving up.
# instance_minutes = 10
# database_minutes = 60
# load_balancer_minutes = 15
# dns_minutes = 5
# How long a deletion waits for dependent resources to go away.
# dependency_minutes = 10
"#;
