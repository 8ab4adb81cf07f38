//! `images verify`: every listed image is in the registry under its tag, with the digest
//! the store recorded, and every manifest and blob it references is there.

use std::sync::atomic::Ordering;
use std::sync::Arc;

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
    let mut set = tokio::task::JoinSet::new();
    for e in images {
        let (reg, slots, progress) = (reg.clone(), slots.clone(), progress.clone());
        set.spawn(async move {
            let Ok(_p) = slots.acquire().await else {
                return;
            };
            let dest = e.reference.destination(reg.host());
            match check(&reg, &e).await {
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

async fn check(reg: &Registry, e: &Expect) -> Result<String, String> {
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
    check_manifest(reg, &repo, &info.digest, 0).await?;
    Ok(info.digest)
}

async fn check_manifest(reg: &Registry, repo: &str, digest: &str, depth: u8) -> Result<(), String> {
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
        Kind::Index { entries, .. } if depth == 0 => {
            for c in &entries {
                match reg.head_manifest(repo, &c.digest).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return Err(format!("manifest {} of its index is missing", c.digest))
                    }
                    Err(x) => return Err(x.to_string()),
                }
                Box::pin(check_manifest(reg, repo, &c.digest, 1)).await?;
            }
            Ok(())
        }
        Kind::Index { .. } => Err(format!("{digest} is an index inside an index")),
    }
}
