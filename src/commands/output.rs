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
