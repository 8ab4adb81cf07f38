//! `images verify`: every listed image is in the registry under its tag, with the digest
//! the store recorded, and every manifest and blob it references is there.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::client::Registry;
use super::manifest::{self, Kind};
use super::progress::{Progress, Summary};
use super::reference::Reference;

/// One image to check: its reference and the digest it must have (when known).
#[derive(Debug, Clone)]
pub struct Expect {
    pub reference: Reference,
    pub digest: Option<String>,
}

pub async fn verify(
    reg: Arc<Registry>,
    images: Vec<Expect>,
    parallelism: usize,
    progress: Arc<Progress>,
) -> Summary {
    let slots = Arc::new(tokio::sync::Semaphore::new(parallelism.max(1)));
    // The manifests of indexes, over the whole run: as many checked at once as a pull
    // transfers blobs (`--parallelism`).
    let children = Arc::new(tokio::sync::Semaphore::new(parallelism.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for e in images {
        let (reg, slots, progress) = (reg.clone(), slots.clone(), progress.clone());
        let children = children.clone();
        set.spawn(async move {
            let Ok(_p) = slots.acquire().await else {
                return;
            };
            let dest = e.reference.destination(reg.host());
            match check(&reg, &e, &children).await {
                Ok(d) => progress.image_done(&dest, &d, false),
                Err(why) => progress.image_failed(&dest, &why),
            }
        });
    }
    while set.join_next().await.is_some() {}
    let s = &reg.stats;
    progress.finish(
        s.requests.load(Ordering::Relaxed),
        s.retries.load(Ordering::Relaxed),
        false,
    )
}

async fn check(reg: &Registry, e: &Expect, children: &Semaphore) -> Result<String, String> {
    let r = &e.reference;
    let repo = r.destination_repository();
    let tag = r.manifest_ref().to_string();
    let info = reg
        .head_manifest(&repo, &tag)
        .await
        .map_err(|x| x.to_string())?
        .ok_or_else(|| "not in the registry".to_string())?;
    if let Some(want) = &e.digest {
        if &info.digest != want {
            return Err(format!(
                "the tag names {}, expected {want} (push it again)",
                info.digest
            ));
        }
    }
    check_manifest(reg, &repo, &info.digest, Some(children)).await?;
    Ok(info.digest)
}

/// Checks manifest `digest` and what it references. `children` is set for a top-level
/// manifest: an index's manifests are then checked concurrently, each holding a permit of
/// it, and every one missing or incomplete is named (a nested index is refused).
async fn check_manifest(
    reg: &Registry,
    repo: &str,
    digest: &str,
    children: Option<&Semaphore>,
) -> Result<(), String> {
    let (info, bytes) = reg
        .get_manifest(repo, digest)
        .await
        .map_err(|x| x.to_string())?;
    let m = manifest::parse(&bytes, &info.media_type).map_err(|x| format!("{digest}: {x}"))?;
    match m.kind {
        Kind::Image { blobs } => {
            let heads = blobs.iter().map(|b| async move {
                match reg.head_blob(repo, &b.digest).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err(format!("blob {} is missing", b.digest)),
                    Err(x) => Err(x.to_string()),
                }
            });
            let mut missing = Vec::new();
            for r in futures::future::join_all(heads).await {
                if let Err(x) = r {
                    missing.push(x);
                }
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(missing.join("; "))
            }
        }
        Kind::Index { entries, .. } => {
            let Some(limit) = children else {
                return Err(format!("{digest} is an index inside an index"));
            };
            let checks = entries.iter().map(|c| async move {
                let Ok(_permit) = limit.acquire().await else {
                    return Err("the check was stopped".to_string());
                };
                match reg.head_manifest(repo, &c.digest).await {
                    Ok(Some(_)) => Box::pin(check_manifest(reg, repo, &c.digest, None)).await,
                    Ok(None) => Err(format!("manifest {} of its index is missing", c.digest)),
                    Err(x) => Err(x.to_string()),
                }
            });
            let failed: Vec<String> = futures::future::join_all(checks)
                .await
                .into_iter()
                .filter_map(Result::err)
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(failed.join("; "))
            }
        }
    }
}
