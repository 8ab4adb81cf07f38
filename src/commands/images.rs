//! `provision images pull|push|save|verify`: fill the environment's registry.
//!
//! The work is in `crate::images`; this file resolves the inputs (the store, the target
//! registry's address, name, CA and credentials from the config, the state and
//! `state/<name>/secrets/`), picks the output mode and maps the outcome to an exit code.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::{exit, pull_shared_secrets, read_state, Ctx};
use crate::blueprint::{self, ids};
use crate::cli::{ImagesCommand, ImagesSource, ImagesTarget};
use crate::config::{AccessMode, Config, Registry as RegistryCfg};
use crate::images::client::{self, Credentials, Registry};
use crate::images::manifest::Platform;
use crate::images::progress::{self, Progress, Summary};
use crate::images::pull::PullOptions;
use crate::images::reference::{self, Reference};
use crate::images::store::Store;
use crate::images::{archive, copy, layout::LayoutReader, pull, push, verify};
use crate::model::Attrs;
use crate::state::Paths;
use crate::ui::Verbosity;

pub(super) async fn images(ctx: &Ctx, command: ImagesCommand) -> Result<u8> {
    match command {
        ImagesCommand::Pull {
            source,
            store,
            parallelism,
        } => {
            let refs = reference::collect(&source.list, &source.refs)?;
            if refs.is_empty() {
                bail!("no image to pull: give --list FILE or references");
            }
            let opts = pull_options(&source, parallelism)?;
            let store =
                Store::open(&store_dir(ctx, store)?).context("cannot open the image store")?;
            let progress = Arc::new(Progress::new(mode(ctx), "pulled", refs.len()));
            let summary = pull::pull(&store, refs, opts, progress, ctrl_c()).await?;
            Ok(outcome(&summary, &Route::Pull))
        }
        ImagesCommand::Push {
            source,
            store,
            archive: archive_path,
            target,
            parallelism,
        } => {
            let refs = reference::collect(&source.list, &source.refs)?;
            // With --archive, the images named are the list the archive was made from: what
            // names its images tagged without a repository. Without it, pull and push at once.
            if !refs.is_empty() && archive_path.is_none() {
                let opts = pull_options(&source, parallelism)?;
                let store =
                    Store::open(&store_dir(ctx, store)?).context("cannot open the image store")?;
                let reg = Arc::new(target_registry(ctx, &target).await?);
                reg.ping().await?;
                let progress = Arc::new(Progress::new(mode(ctx), "pushed", refs.len()));
                let summary = copy::copy(&store, refs, opts, reg, progress, ctrl_c()).await?;
                return Ok(outcome(&summary, &Route::Copy));
            }
            if source.source_registry.is_some()
                || source.source_ca.is_some()
                || source.source_plain_http
                || source.all_platforms
                || !source.platform.is_empty()
            {
                if archive_path.is_some() {
                    bail!("the source options (--platform, --all-platforms, --source-*) choose what a pull fetches; --archive pushes the archive's images as they are");
                }
                bail!("the source options (--platform, --all-platforms, --source-*) choose what a pull fetches: name the images too (--list FILE or REF)");
            }
            let (layout, from): (Arc<dyn LayoutReader>, push::Source) = match archive_path {
                Some(a) => (
                    Arc::new(archive::ArchiveReader::open(&a).map_err(|e| {
                        let advice = match e {
                            // A wrong path: nothing to re-create.
                            archive::ArchiveError::Missing { .. }
                            | archive::ArchiveError::Io { .. } => "",
                            _ => {
                                "; write it again where the store is (`provision images save \
                                 --archive FILE`), copy it over and push it again"
                            }
                        };
                        let e = anyhow::Error::new(e);
                        anyhow::anyhow!("cannot read the archive {}: {e:#}{advice}", a.display())
                    })?),
                    push::Source::Archive(a),
                ),
                None => {
                    let dir = store_dir(ctx, store)?;
                    if !dir.join("index.json").is_file() {
                        bail!(
                            "no image store at {}: run `provision images pull` first (or give --store DIR / --archive FILE)",
                            dir.display()
                        );
                    }
                    let s = Store::open(&dir).context("cannot open the image store")?;
                    (Arc::new(s.layout().clone()), push::Source::Store(s))
                }
            };
            let mut images = push::images_of(layout.as_ref())?;
            if let push::Source::Archive(a) = &from {
                images = push::name_bare_tags(images, &refs, a)?;
            }
            if images.is_empty() {
                match &from {
                    push::Source::Archive(a) => bail!(
                        "the archive {} holds no image: write it from a store that has them \
                         (`provision images pull`, then `provision images save --archive FILE`)",
                        a.display()
                    ),
                    _ => bail!("the store holds no image: run `provision images pull` first"),
                }
            }
            let route = match &from {
                push::Source::Archive(a) => Route::PushArchive(a.clone()),
                _ => Route::PushStore,
            };
            let reg = Arc::new(target_registry(ctx, &target).await?);
            // Reachable, and the credentials accepted, before a single image starts (and
            // the authentication is settled once, not once per image).
            reg.ping().await?;
            let progress = Arc::new(Progress::new(mode(ctx), "pushed", images.len()));
            let summary = push::push(
                layout,
                from,
                reg,
                images,
                parallelism.into(),
                progress,
                ctrl_c(),
            )
            .await?;
            Ok(outcome(&summary, &route))
        }
        ImagesCommand::Save {
            archive: path,
            store,
            split,
        } => {
            let dir = store_dir(ctx, store)?;
            if !dir.join("index.json").is_file() {
                bail!(
                    "no image store at {}: run `provision images pull` first",
                    dir.display()
                );
            }
            let split = split.as_deref().map(archive::parse_size).transpose()?;
            // Shared: saves may run side by side, a pull (which writes the store) may not.
            let lock = Store::open(&dir)
                .and_then(|s| s.lock_shared("images save"))
                .context("cannot save the image store")?;
            let s = tokio::task::spawn_blocking(move || {
                let _lock = lock;
                archive::save(&dir, &path, split)
            })
            .await
            .context("the save stopped")??;
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "format_version": crate::ui::json::FORMAT_VERSION,
                        "type": "saved",
                        "volumes": s.volumes.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                        "checksums": s.checksums.as_ref().map(|p| p.display().to_string()),
                        "bytes": s.bytes,
                        "blobs": s.blobs,
                    })
                );
            } else if ctx.verbosity >= Verbosity::Normal {
                println!(
                    "saved {} blobs ({}) to {}{}",
                    s.blobs,
                    progress::human_bytes(s.bytes),
                    s.volumes
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    s.checksums
                        .as_ref()
                        .map(|c| format!(" (checksums: {})", c.display()))
                        .unwrap_or_default()
                );
            }
            Ok(exit::OK)
        }
        ImagesCommand::Verify {
            list,
            refs,
            store,
            target,
            parallelism,
        } => {
            let refs = reference::collect(&list, &refs)?;
            let dir = store_dir(ctx, store).ok();
            let known = dir
                .as_deref()
                .filter(|d| d.join("index.json").is_file())
                .map(|d| push::images_of(&crate::images::layout::DirLayout::new(d)))
                .transpose()?
                .unwrap_or_default();
            let digest_of = |r: &Reference| {
                known
                    .iter()
                    .find(|(n, _)| {
                        Reference::parse(n).is_ok_and(|k| k.to_string() == r.to_string())
                    })
                    .map(|(_, d)| d.digest.clone())
            };
            let expect: Vec<verify::Expect> = if refs.is_empty() {
                known
                    .iter()
                    .filter_map(|(n, d)| {
                        Reference::parse(n).ok().map(|r| verify::Expect {
                            reference: r,
                            digest: Some(d.digest.clone()),
                        })
                    })
                    .collect()
            } else {
                refs.iter()
                    .map(|r| verify::Expect {
                        reference: r.clone(),
                        digest: digest_of(r),
                    })
                    .collect()
            };
            if expect.is_empty() {
                bail!(
                    "nothing to verify: give --list FILE or references (the store holds no image)"
                );
            }
            let reg = Arc::new(target_registry(ctx, &target).await?);
            reg.ping().await?;
            let progress = Arc::new(Progress::new(mode(ctx), "verified", expect.len()));
            let summary = verify::verify(reg, expect, parallelism.into(), progress).await;
            Ok(outcome(&summary, &Route::Verify))
        }
    }
}

/// The pull options `images pull` and `images push REF...` share.
fn pull_options(source: &ImagesSource, parallelism: u16) -> Result<PullOptions> {
    let platforms = if source.platform.is_empty() {
        vec![Platform::parse("linux/amd64").map_err(anyhow::Error::msg)?]
    } else {
        source
            .platform
            .iter()
            .map(|p| Platform::parse(p).map_err(anyhow::Error::msg))
            .collect::<Result<Vec<_>>>()?
    };
    Ok(PullOptions {
        platforms,
        all_platforms: source.all_platforms,
        source_registry: source.source_registry.clone(),
        plain_http: source.source_plain_http,
        ca_pem: source.source_ca.as_deref().map(read_ca).transpose()?,
        parallelism: parallelism.into(),
    })
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn mode(ctx: &Ctx) -> progress::Mode {
    if ctx.json {
        progress::Mode::Json
    } else if ctx.verbosity == Verbosity::Quiet {
        progress::Mode::Quiet
    } else if std::io::stderr().is_terminal()
        && std::env::var_os("TERM").is_some_and(|t| t != "dumb")
    {
        progress::Mode::Live
    } else {
        progress::Mode::Plain
    }
}

/// Which command ran: what its failures tell the operator to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Pull,
    PushStore,
    PushArchive(PathBuf),
    Copy,
    Verify,
}

impl Route {
    fn verb(&self) -> &'static str {
        match self {
            Route::Pull => "pull",
            Route::PushStore | Route::PushArchive(_) | Route::Copy => "push",
            Route::Verify => "verify",
        }
    }

    /// The last line after the failures: the next step from where the operator sits (each
    /// failure above says what is wrong and, where it is the source's fault, how to fix it).
    fn next_step(&self) -> String {
        match self {
            Route::Pull => {
                "run the same `provision images pull` again: it resumes, fetching only what \
                 the store lacks"
            }
            Route::PushStore => {
                "run `provision images push` again once the cause is fixed: what the registry \
                 has is not sent again"
            }
            Route::PushArchive(a) => {
                return format!(
                    "run `provision images push --archive {}` again once the cause is fixed: \
                     what the registry has is not sent again",
                    a.display()
                )
            }
            Route::Copy => {
                "run the same `provision images push` command again once the cause is fixed: \
                 it resumes the pull and sends only what the registry lacks"
            }
            Route::Verify => {
                "push the images named (`provision images push`, or `provision images push \
                 --archive FILE` where the archive is): only what the registry lacks is sent; \
                 then verify again"
            }
        }
        .to_string()
    }
}

/// Exit code of a run; failures named on stderr (the summary already went out).
fn outcome(s: &Summary, route: &Route) -> u8 {
    if s.interrupted {
        return exit::INTERRUPTED;
    }
    if s.failed == 0 {
        return exit::OK;
    }
    eprintln!(
        "error: {} failed for {} of {} images:",
        route.verb(),
        s.failed,
        s.images
    );
    for f in &s.failures {
        eprintln!("  {}: {}", f.image, f.reason);
    }
    eprintln!("{}", route.next_step());
    exit::ERROR
}

/// `--store`, else `state/<name>/images/` of the config.
fn store_dir(ctx: &Ctx, store: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(s) = store {
        return Ok(s);
    }
    let cfg = ctx.load_config().with_context(|| {
        format!(
            "the default image store is state/<name>/images/ of the config's env, and {} \
             cannot be read; give --store DIR",
            ctx.config_path.display()
        )
    })?;
    Ok(Paths::new(&ctx.state_dir, &cfg.name)
        .secrets_dir()
        .parent()
        .map(|p| p.join("images"))
        .unwrap_or_else(|| ctx.state_dir.join(&cfg.name).join("images")))
}

fn read_ca(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the CA file {}", path.display()))
}

fn read_secret(dir: &Path, file: &str) -> Result<String> {
    let p = dir.join(file);
    let s = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "cannot read {}: the registry's secrets are made by `provision plan`/`apply` \
             (or `provision state pull` with the S3 backend)",
            p.display()
        )
    })?;
    Ok(s.trim().to_string())
}

/// The registry `push`/`verify` talk to: `--to`, else the environment's.
async fn target_registry(ctx: &Ctx, t: &ImagesTarget) -> Result<Registry> {
    if let Some(to) = &t.to {
        let ca_pem = t.to_ca.as_deref().map(read_ca).transpose()?;
        return Registry::new(
            to,
            client::Options {
                plain_http: false,
                ca_pem,
                via: None,
                credentials: client::credentials_for(to),
                attempts: 6,
            },
        );
    }
    let cfg = ctx.load_config()?;
    match &cfg.registry {
        RegistryCfg::External {
            url,
            ca_file,
            ca_pem,
        } => {
            let ca = match (ca_pem, ca_file) {
                (Some(p), _) => Some(p.clone().into_bytes()),
                (None, Some(f)) => Some(read_ca(f)?),
                (None, None) => None,
            };
            Registry::new(
                url,
                client::Options {
                    plain_http: false,
                    ca_pem: ca,
                    via: t.via.clone(),
                    credentials: client::credentials_for(url),
                    attempts: 6,
                },
            )
        }
        RegistryCfg::Node { port, .. } => {
            let name = blueprint::registry_host_name(&cfg);
            let host = format!("{name}:{port}");
            let paths = Paths::new(&ctx.state_dir, &cfg.name);
            let via = match &t.via {
                Some(v) => v.clone(),
                None => env_address(ctx, &cfg, &paths, *port).await?,
            };
            let backend = ctx.backend(&cfg).await?;
            if backend.shares_secrets() {
                pull_shared_secrets(ctx, &cfg, backend.as_ref(), &paths).await?;
            }
            let secrets = paths.secrets_dir();
            let ca = read_secret(&secrets, "registry-ca.crt")?;
            let password = read_secret(&secrets, "registry-password")?;
            Registry::new(
                &host,
                client::Options {
                    plain_http: false,
                    ca_pem: Some(ca.into_bytes()),
                    via: Some(via),
                    credentials: Some(Credentials {
                        username: crate::render::REGISTRY_USERNAME.to_string(),
                        password,
                    }),
                    attempts: 6,
                },
            )
        }
    }
}

/// Where the env's registry host answers from the workstation: its public address
/// (bastion mode). In ssm mode there is none: say how to open a tunnel.
async fn env_address(ctx: &Ctx, cfg: &Config, _paths: &Paths, port: u16) -> Result<String> {
    let (_, state) = read_state(ctx, cfg).await?;
    let registry = state.as_ref().and_then(|s| {
        s.resources
            .get(&crate::model::LogicalId::new(ids::REGISTRY))
            .filter(|e| e.status == crate::state::Status::Created)
    });
    if cfg.access == AccessMode::Ssm {
        let target = registry
            .map(|e| e.cloud_id.clone())
            .unwrap_or_else(|| "<registry host instance id: provision output>".into());
        bail!(
            "env `{}` uses ssm access: its registry host has no address this workstation may \
             reach. Open a tunnel and push through it:\n  \
             aws ssm start-session --region {} --target {target} \\\n    \
             --document-name AWS-StartPortForwardingSessionToRemoteHost \\\n    \
             --parameters \"host=localhost,portNumber={port},localPortNumber=5000\"\n  \
             provision images push --via 127.0.0.1:5000\n\
             One SSM session carries about 1 MB/s (amazon-ssm-agent#664): for more than a few \
             hundred MB, write an archive (`provision images save --archive images.tar`), copy \
             it to a machine inside the VPC and run `provision images push --archive \
             images.tar` there.",
            cfg.name,
            cfg.region
        );
    }
    let entry = registry.with_context(|| {
        format!(
            "no registry host in the state of env `{}` yet: run `provision apply` first, or \
             give --via HOST:PORT (a tunnel) or --to HOST:PORT (another registry)",
            cfg.name
        )
    })?;
    match &entry.attrs {
        Attrs::Instance {
            public_ip: Some(ip),
            ..
        } => Ok(format!("{ip}:{port}")),
        _ => bail!(
            "the registry host of env `{}` has no public address in the state; reach it through \
             a tunnel (`ssh -L 5000:localhost:{port}` through the bastion) and give --via \
             127.0.0.1:5000",
            cfg.name
        ),
    }
}
