//! Command-line definitions only (raw flags); `commands` turns them into work.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "provision",
    version,
    about = "Build the AWS infrastructure for an air-gapped Rancher server, idempotently and reversibly"
)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, default_value = "provision.toml")]
    pub config: PathBuf,
    /// Where state files, secrets and artifacts live.
    #[arg(long, global = true, default_value = "state")]
    pub state_dir: PathBuf,
    /// More detail: -v adds one line per AWS API call; -vv the SDK's debug logs.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// `plan`, `show`, `output`, `verify`, `validate` and `state list` print one JSON
    /// document on stdout; `apply` and `destroy` one JSON object per event (see
    /// docs/json.md).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Shells `provision completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShellArg {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopologyArg {
    K3s,
    Rke,
    Rke2,
    Docker,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented provision.toml to start from.
    #[command(after_help = "Example:\n  provision init --topology rke --config lab.toml")]
    Init {
        #[arg(long, value_enum, default_value = "k3s")]
        topology: TopologyArg,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check the config; no cloud calls.
    #[command(after_help = "Example:\n  provision --config lab.toml validate")]
    Validate,
    /// Read state and the live cloud, print what apply would do; changes nothing.
    #[command(
        after_help = "Example:\n  provision plan --out plan.json && provision apply plan.json\n\nSymbols: + create, ~ update in place, -/+ replace, - delete, = adopt, x forget."
    )]
    Plan {
        /// Save the plan for `apply PLANFILE`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Exit 2 when there are changes (0 when none).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Plan a destroy instead.
        #[arg(long)]
        destroy: bool,
        /// One line per resource.
        #[arg(long)]
        compact: bool,
        /// Replace this resource even where the plan would change it in place or not at
        /// all (a cluster node whose user-data or key pair changed). Repeatable.
        #[arg(long = "replace", value_name = "ID")]
        replace: Vec<String>,
        /// Issue the registry a new server certificate (replaces the registry host; its
        /// image store volume is kept).
        #[arg(long)]
        renew_registry_cert: bool,
    },
    /// Make the cloud match the config; resumable.
    #[command(after_help = "Example:\n  provision apply --yes --parallelism 4")]
    Apply {
        /// A plan saved with `plan --out`.
        planfile: Option<PathBuf>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Steps working at the same time (a step that only waits for the cloud, such as an
        /// instance booting or RDS creating, does not count).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallelism: u16,
        /// Carry out changes that destroy data (replacing a node, the database or the
        /// registry's volume); without it apply refuses them.
        #[arg(long)]
        allow_data_loss: bool,
        /// With no state here: take over the resources found by their tags (a lost state
        /// file), continuing their lineage. Without it apply refuses and changes nothing.
        #[arg(long)]
        adopt: bool,
        /// Replace this resource even where the plan would change it in place or not at
        /// all (a cluster node whose user-data or key pair changed). Repeatable.
        #[arg(long = "replace", value_name = "ID")]
        replace: Vec<String>,
        /// Issue the registry a new server certificate (replaces the registry host; its
        /// image store volume is kept).
        #[arg(long)]
        renew_registry_cert: bool,
    },
    /// Delete everything this environment owns, in reverse order.
    #[command(after_help = "Example:\n  provision destroy --skip-final-snapshot")]
    Destroy {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Delete the RDS instance without a final snapshot.
        #[arg(long)]
        skip_final_snapshot: bool,
        /// Keep the RDS instance's automated backups (restorable to a point in time, and
        /// billed, until their retention period ends); by default they are deleted with it.
        #[arg(long)]
        keep_automated_backups: bool,
        /// With no state here: destroy the resources found by their tags (a lost state
        /// file). Without it destroy refuses and deletes nothing.
        #[arg(long)]
        adopt: bool,
        /// Steps working at the same time (a step that only waits for the cloud does not
        /// count).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallelism: u16,
    },
    /// What the state holds (resources, ids, status).
    #[command(after_help = "Example:\n  provision show --wide")]
    Show {
        /// Full cloud ids (ARNs) instead of shortened ones.
        #[arg(long)]
        wide: bool,
    },
    /// The values users need next (urls, ips, endpoints).
    #[command(after_help = "Example:\n  provision output rancher_url")]
    Output {
        /// Print only this value.
        name: Option<String>,
    },
    /// Write the files for the next install steps.
    #[command(after_help = "Example:\n  provision artifacts --dir ./install")]
    Artifacts {
        /// Folder to write into (default state/<name>/artifacts).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Prove the air gap from the live cloud: no way out, the paths the install needs,
    /// the front door. Exit 0 when every check holds, 1 naming each violation.
    #[command(
        after_help = "Example:\n  provision verify --json > verify.json\n\nReads the cloud, never the state; changes nothing."
    )]
    Verify {
        /// Also run a Network Access Analyzer scope (ENI -> internet gateway); not
        /// available in this build, the static checks decide.
        #[arg(long)]
        deep: bool,
    },
    /// Remove a stale lock.
    #[command(after_help = "Example:\n  provision unlock --force")]
    Unlock {
        /// Remove the lock even if a process still holds it.
        #[arg(long)]
        force: bool,
    },
    /// Move or read the state: between the local file and the S3 backend (`push`,
    /// `pull`), or from whichever backend the config names (`list`, `show`).
    #[command(
        after_help = "Example:\n  provision state push          # local state/<name>.json -> [state] bucket/key\n  provision state pull          # S3 -> state/<name>.json\n  provision state list\n  provision state show node-1"
    )]
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Fill the environment's registry: pull images into a local store, push them to the
    /// registry (or save them as an archive for a side with no internet), verify.
    #[command(
        after_help = "Example:\n  provision images pull --list rancher-images.txt\n  provision images push\n  provision images verify --list rancher-images.txt"
    )]
    Images {
        #[command(subcommand)]
        command: Box<ImagesCommand>,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  provision completions bash > ~/.local/share/bash-completion/completions/provision"
    )]
    Completions {
        #[arg(value_enum)]
        shell: ShellArg,
    },
    /// Print the man page (roff).
    #[command(after_help = "Example:\n  provision man > provision.1 && man ./provision.1")]
    Man,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Copy the local state (and the env's secrets) to the S3 backend of the config.
    #[command(
        after_help = "Example:\n  provision state push --from state/lab.rescue.json --force"
    )]
    Push {
        /// Push this state file instead of state/<name>.json (e.g. a rescue file).
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Replace a remote state of another lineage or a newer serial.
        #[arg(long)]
        force: bool,
    },
    /// Copy the state of the S3 backend (and the env's secrets) to state/<name>.json.
    #[command(after_help = "Example:\n  provision state pull && provision show")]
    Pull {
        /// Replace a local state of another lineage or a newer serial.
        #[arg(long)]
        force: bool,
    },
    /// List the resources the state holds: logical id, kind, status, cloud id.
    #[command(after_help = "Example:\n  provision state list --json")]
    List,
    /// Print one resource's entry of the state as JSON.
    #[command(after_help = "Example:\n  provision state show node-1")]
    Show {
        /// Logical id, e.g. `node-1` (see `provision state list`).
        id: String,
    },
}

/// Where `images push` / `images verify` send their requests.
#[derive(Debug, Clone, clap::Args)]
pub struct ImagesTarget {
    /// Send the bytes to this local end of a tunnel (`ssh -L`, an SSM port forward) and
    /// still verify TLS as the registry's name.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "to")]
    pub via: Option<String>,
    /// Another registry than the environment's (credentials from the auth file:
    /// $REGISTRY_AUTH_FILE or $DOCKER_CONFIG/config.json).
    #[arg(long, value_name = "HOST:PORT")]
    pub to: Option<String>,
    /// The CA (PEM) that signed the certificate of `--to`'s registry.
    #[arg(long, value_name = "FILE", requires = "to")]
    pub to_ca: Option<PathBuf>,
}

/// Which images `images pull` (and `images push REF...`) fetch, and from where.
#[derive(Debug, Clone, clap::Args)]
pub struct ImagesSource {
    /// An image list in the rancher-images.txt format (repeatable).
    #[arg(long, value_name = "FILE")]
    pub list: Vec<PathBuf>,
    /// References (`rancher/fleet:v1`, `quay.io/jetstack/cert-manager-controller:v1.14.4`).
    #[arg(value_name = "REF")]
    pub refs: Vec<String>,
    /// Keep only this platform of multi-arch images (repeatable; default linux/amd64).
    #[arg(long, value_name = "OS/ARCH", conflicts_with = "all_platforms")]
    pub platform: Vec<String>,
    /// Keep multi-arch images whole (every platform, the index's own digest).
    #[arg(long)]
    pub all_platforms: bool,
    /// Take every docker.io reference from this registry (a mirror) instead.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub source_registry: Option<String>,
    /// Trust this CA (PEM) for the source registries too.
    #[arg(long, value_name = "FILE")]
    pub source_ca: Option<PathBuf>,
    /// Speak plain HTTP to the source registries.
    #[arg(long)]
    pub source_plain_http: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Fetch images into the local store (an OCI image layout), resumable and deduplicated.
    #[command(
        after_help = "Example:\n  provision images pull --list rancher-images.txt --list rke2-images-all.linux-amd64.txt\n  provision images pull rancher/fleet:v0.12.0 --platform linux/arm64"
    )]
    Pull {
        #[command(flatten)]
        source: ImagesSource,
        /// The store (default state/<name>/images/).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Blob transfers at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallelism: u16,
    },
    /// Copy every image of the store (or of an archive) into the registry; with images
    /// named (`--list FILE`, `REF`), pull them into the store and push each blob the
    /// moment it has landed (one command, both directions at once). With `--archive`, the
    /// images named are the list the archive was made from: nothing is pulled, and an
    /// image the archive names by a bare tag (as other tools write them) is pushed under
    /// the one image of the list with that tag.
    #[command(
        after_help = "Example:\n  provision images push\n  provision images push --via 127.0.0.1:5000\n  provision images push --archive images.tar --to registry.example:5000 --to-ca ca.crt\n  provision images push --list rancher-images.txt"
    )]
    Push {
        #[command(flatten)]
        source: ImagesSource,
        /// The store (default state/<name>/images/).
        #[arg(long, value_name = "DIR", conflicts_with = "archive")]
        store: Option<PathBuf>,
        /// Read the images from an archive written by `images save` or an OCI-layout tar
        /// (never extracted); with `--list`/`REF`, those name its images (nothing pulled).
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
        #[command(flatten)]
        target: ImagesTarget,
        /// Blob transfers at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallelism: u16,
    },
    /// Write the store as one tar of its OCI image layout (for a side with no internet).
    #[command(after_help = "Example:\n  provision images save --archive images.tar --split 4G")]
    Save {
        /// The archive to write.
        #[arg(long, value_name = "FILE")]
        archive: PathBuf,
        /// The store (default state/<name>/images/).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Cut the archive into volumes of at most this size (`4G`, `700M`) with a SHA-256 list.
        #[arg(long, value_name = "SIZE")]
        split: Option<String>,
    },
    /// Check that every listed image is in the registry with its digest, blobs included.
    #[command(after_help = "Example:\n  provision images verify --list rancher-images.txt --json")]
    Verify {
        /// An image list in the rancher-images.txt format (repeatable).
        #[arg(long, value_name = "FILE")]
        list: Vec<PathBuf>,
        /// References; with neither lists nor references, every image of the store.
        #[arg(value_name = "REF")]
        refs: Vec<String>,
        /// The store whose digests the registry must have (default state/<name>/images/).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        #[command(flatten)]
        target: ImagesTarget,
        /// Requests at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallelism: u16,
    },
}
