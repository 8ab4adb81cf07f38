//! `provision output`: the values users need next (urls, ips, endpoints).

use anyhow::{Context, Result};

use super::{exit, outputs, read_state, Ctx};

pub(super) async fn output(ctx: &Ctx, name: Option<&str>) -> Result<u8> {
    let cfg = ctx.load_config()?;
    let (_, state) = read_state(ctx, &cfg).await?;
    let state = state.with_context(|| {
        format!(
            "no state for env `{}` yet: run `provision apply` first",
            cfg.name
        )
    })?;
    // After `destroy` the state is empty: there is no Rancher to point at.
    if !state
        .resources
        .values()
        .any(|e| e.status == crate::state::Status::Created)
    {
        anyhow::bail!(
            "env `{}` has no resources (destroyed, or never applied): nothing to output; run \
             `provision apply` to build it",
            cfg.name
        );
    }
    let outs = outputs(&cfg, &state);
    let map = outs.to_map();
    match name {
        Some(n) => {
            let v = map.get(n).with_context(|| {
                format!(
                    "no output named `{n}`; available: {}",
                    map.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(v)?);
            } else {
                match v {
                    serde_json::Value::String(s) => println!("{s}"),
                    serde_json::Value::Array(a) => {
                        for x in a {
                            println!("{}", x.as_str().unwrap_or_default());
                        }
                    }
                    serde_json::Value::Null => {}
                    other => println!("{other}"),
                }
            }
        }
        None if ctx.json => println!(
            "{}",
            serde_json::to_string_pretty(&crate::ui::json::output_document(&map))?
        ),
        None => print!("{}", outs.render_text()),
    }
    Ok(exit::OK)
}
