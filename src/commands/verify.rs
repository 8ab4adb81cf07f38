//! `provision verify`: read the live network (never the state) and prove the air gap; a
//! table of checks, or one JSON document. Exit 0 when every check holds, 1 otherwise.

use anyhow::Result;

use super::{connect, exit, prepare, Ctx};
use crate::ui;
use crate::verify::{self, Check, Expect, Outcome, SnapshotQuery};

/// What `--deep` says: the Network Access Analyzer scope is not part of this build.
pub const DEEP_UNAVAILABLE: &str = "--deep: the Network Access Analyzer scope is not \
     available in this build; the static checks decide";

pub(super) async fn verify(ctx: &Ctx, deep: bool) -> Result<u8> {
    let p = prepare(ctx).await?;
    let expect = Expect::new(&p.cfg, &p.desired);
    let cloud = connect(&p.cfg).await?;
    let query = SnapshotQuery {
        env: p.cfg.name.clone(),
        hostname: p.cfg.hostname.clone(),
        zone: p.cfg.dns.zone.clone(),
        private_zone: p.cfg.dns.private_zone,
    };
    let snap = cloud.snapshot(&query).await?;
    let checks = verify::run(&snap, &expect);
    let failed = checks.iter().filter(|c| !c.ok()).count();
    if ctx.json {
        let doc = ui::json::verify_document(&p.cfg.name, &checks, deep.then_some(DEEP_UNAVAILABLE));
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&checks));
        if deep {
            eprintln!("{DEEP_UNAVAILABLE}");
        }
        if failed == 0 {
            ctx.say(&format!("verify: all {} checks hold", checks.len()));
        } else {
            eprintln!(
                "verify: {failed} of {} checks failed (each names its resource above)",
                checks.len()
            );
        }
    }
    Ok(if failed == 0 { exit::OK } else { exit::ERROR })
}

/// The table: status, check, resource, reason.
fn render(checks: &[Check]) -> String {
    let status = |c: &Check| match c.outcome {
        Outcome::Pass => "pass",
        Outcome::Fail => "FAIL",
        Outcome::Note => "note",
    };
    let w_name = checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let w_res = checks
        .iter()
        .map(|c| c.resource.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let mut out = format!(
        "{:<6}  {:<w_name$}  {:<w_res$}  REASON\n",
        "STATUS", "CHECK", "RESOURCE"
    );
    for c in checks {
        out.push_str(&format!(
            "{:<6}  {:<w_name$}  {:<w_res$}  {}\n",
            status(c),
            c.name,
            c.resource,
            c.reason
        ));
    }
    out
}
