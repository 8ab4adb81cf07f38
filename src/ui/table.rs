//! `show`: the state as a table that stays aligned, grouped like the plan.

use crate::model::Attrs;
use crate::state::{State, Status};

use super::plan::{group, GROUPS};
use super::style::Style;

/// Longest cloud id shown without `--wide`; longer ones (ARNs) keep their head and tail.
pub const ID_WIDTH: usize = 28;

/// Shorten `text` to `width` characters, keeping the start and the end (`arn:aws:el…/4f2a`).
pub fn truncate_middle(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width || width < 5 {
        return text.to_string();
    }
    let tail = (width - 1) / 2;
    let head = width - 1 - tail;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{start}…{end}")
}

/// `3m`, `5h`, `2d` between an RFC 3339 time and `now`; `-` when unknown.
pub fn age(updated_at: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(updated_at) else {
        return "-".into();
    };
    let secs = (now - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn detail(attrs: &Attrs) -> String {
    match attrs {
        Attrs::Instance {
            private_ip,
            public_ip,
            ..
        } => match public_ip {
            Some(ip) => format!("{private_ip} public {ip}"),
            None => private_ip.clone(),
        },
        Attrs::LoadBalancer { dns_name, .. } => dns_name.clone(),
        Attrs::Database {
            address, status, ..
        } => format!("{address} ({status})"),
        Attrs::DnsRecord {
            fqdn, record_type, ..
        } => format!("{fqdn} {record_type}"),
        Attrs::Subnet { availability_zone } => availability_zone.clone(),
        Attrs::Volume {
            availability_zone,
            modified_at,
        } => match modified_at {
            Some(at) => format!("{availability_zone} (resized {at})"),
            None => availability_zone.clone(),
        },
        Attrs::HostedZone { name } => name.clone(),
        Attrs::IamRole { arn } | Attrs::InstanceProfile { arn } => arn.clone(),
        _ => String::new(),
    }
}

/// The table: one block per group, columns aligned over the whole table.
pub fn render_state(
    state: &State,
    wide: bool,
    now: chrono::DateTime<chrono::Utc>,
    style: Style,
) -> String {
    let rows: Vec<(usize, [String; 5], String)> = state
        .resources
        .iter()
        .map(|(id, e)| {
            let cloud = if wide {
                e.cloud_id.clone()
            } else {
                truncate_middle(&e.cloud_id, ID_WIDTH)
            };
            let status = match e.status {
                Status::Created => "created",
                Status::Creating => "creating*",
            };
            (
                group(e.kind).0,
                [
                    id.to_string(),
                    e.kind.label().to_string(),
                    if cloud.is_empty() { "-".into() } else { cloud },
                    status.to_string(),
                    age(&e.updated_at, now),
                ],
                detail(&e.attrs),
            )
        })
        .collect();
    let headers = ["ID", "KIND", "CLOUD ID", "STATUS", "AGE"];
    let mut widths = headers.map(|h| h.chars().count());
    for (_, cols, _) in &rows {
        for (w, c) in widths.iter_mut().zip(cols) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String; 5], detail: &str| {
        let mut text = String::from(" ");
        for (c, w) in cols.iter().zip(widths) {
            let pad = w - c.chars().count();
            text.push_str(&format!(" {c}{}", " ".repeat(pad)));
        }
        text.push_str(&format!("  {detail}"));
        text.trim_end().to_string() + "\n"
    };
    let mut out = format!(
        "env {} (serial {}, lineage {})\n\n",
        state.env, state.serial, state.lineage
    );
    out.push_str(&style.bold(&line(&headers.map(String::from), "DETAIL")));
    for (g, name) in GROUPS.iter().enumerate() {
        let members: Vec<_> = rows.iter().filter(|(rg, _, _)| *rg == g).collect();
        if members.is_empty() {
            continue;
        }
        out.push_str(&format!("{}\n", style.dim(&format!("# {name}"))));
        for (_, cols, d) in members {
            out.push_str(&line(cols, d));
        }
    }
    if rows.iter().any(|(_, c, _)| c[3] == "creating*") {
        out.push_str("\n* creating: a run was interrupted; the next run adopts or creates it.\n");
    }
    out
}
