//! The embedded templates and the one minijinja environment that renders them.
//!
//! Rules for template authors: every value that comes from outside goes through a filter
//! that makes it safe where it lands — `yaml` in YAML (a double-quoted scalar), `shell` in
//! shell scripts (single-quoted), `ssh` in ssh_config.
//! Undefined variables are errors, not empty strings.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use super::RenderError;

/// `(name, source)` of every embedded template.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "registry-host.yaml.j2",
        include_str!("../../templates/registry-host.yaml.j2"),
    ),
    (
        "k3s-node.yaml.j2",
        include_str!("../../templates/k3s-node.yaml.j2"),
    ),
    (
        "docker-node.yaml.j2",
        include_str!("../../templates/docker-node.yaml.j2"),
    ),
    (
        "rke2-node.yaml.j2",
        include_str!("../../templates/rke2-node.yaml.j2"),
    ),
    (
        "rke2-config.yaml.j2",
        include_str!("../../templates/rke2-config.yaml.j2"),
    ),
    (
        "artifacts/rke2-install.sh.j2",
        include_str!("../../templates/artifacts/rke2-install.sh.j2"),
    ),
    (
        "registries.yaml.j2",
        include_str!("../../templates/registries.yaml.j2"),
    ),
    (
        "artifacts/rancher-cluster.yml.j2",
        include_str!("../../templates/artifacts/rancher-cluster.yml.j2"),
    ),
    (
        "artifacts/helm-template.sh.j2",
        include_str!("../../templates/artifacts/helm-template.sh.j2"),
    ),
    (
        "artifacts/docker-run.sh.j2",
        include_str!("../../templates/artifacts/docker-run.sh.j2"),
    ),
    (
        "artifacts/k3s-install.env.j2",
        include_str!("../../templates/artifacts/k3s-install.env.j2"),
    ),
    (
        "artifacts/ssm-port-forward.sh.j2",
        include_str!("../../templates/artifacts/ssm-port-forward.sh.j2"),
    ),
    (
        "artifacts/ssh_config.j2",
        include_str!("../../templates/artifacts/ssh_config.j2"),
    ),
    (
        "artifacts/NEXT-STEPS.md.j2",
        include_str!("../../templates/artifacts/NEXT-STEPS.md.j2"),
    ),
];

/// Renders the embedded template `name` with `context`.
pub fn render<S: Serialize>(name: &str, context: S) -> Result<String, RenderError> {
    let env = environment().map_err(|source| RenderError::Template {
        template: name.to_string(),
        source,
    })?;
    env.get_template(name)
        .and_then(|template| template.render(context))
        .map_err(|source| RenderError::Template {
            template: name.to_string(),
            source,
        })
}

fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_filter("yaml", yaml_quote);
    env.add_filter("shell", shell_quote);
    env.add_filter("ssh", ssh_quote);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    Ok(env)
}

/// Writes `value` as a YAML double-quoted scalar that YAML 1.1 (cloud-init's PyYAML) and
/// 1.2 parsers read back unchanged: `"` and `\\` escaped, line breaks and tabs escaped, and
/// every character YAML does not allow raw in a stream (C0/C1 controls, DEL, U+FEFF,
/// U+FFFE, U+FFFF) written as `\uXXXX`.
pub fn yaml_quote(value: &str) -> String {
    use std::fmt::Write;
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            ' '..='~' => quoted.push(c),
            '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' => {
                quoted.push(c)
            }
            c if u32::from(c) > 0xffff => quoted.push(c),
            c => {
                let _ = write!(quoted, "\\u{:04x}", u32::from(c));
            }
        }
    }
    quoted.push('"');
    quoted
}

/// Quotes `value` for a POSIX shell: single quotes, each `'` written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Quotes an ssh_config argument when it holds whitespace or quotes.
fn ssh_quote(value: &str) -> Result<String, minijinja::Error> {
    if value.contains(['"', '\n', '\r']) {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{value:?} cannot be written in ssh_config"),
        ));
    }
    if value.is_empty() || value.contains(char::is_whitespace) {
        Ok(format!("\"{value}\""))
    } else {
        Ok(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let env = environment().unwrap();
        for (name, _) in TEMPLATES {
            env.get_template(name).unwrap();
        }
    }

    #[test]
    fn yaml_quote_round_trips() {
        let values = [
            "",
            "plain",
            r#"p"a:s's #w{{o}}\r\d - [x]: &y *z"#,
            "line\nbreak\r\n\ttab",
            "ctrl\u{1}\u{7f}\u{85}\u{9f}bom\u{feff}\u{fffe}",
            "unicode é ✓ 🦀",
            "- not a list",
            "yes",
            "5000:5000",
            "~",
        ];
        for value in values {
            let yaml = format!("key: {}\n", yaml_quote(value));
            let parsed: std::collections::BTreeMap<String, String> =
                serde_yaml::from_str(&yaml).unwrap_or_else(|error| panic!("{yaml}: {error}"));
            assert_eq!(parsed["key"], value, "{yaml}");
        }
        assert_eq!(yaml_quote("a\u{7f}"), r#""a\u007f""#);
    }

    #[test]
    fn shell_quote_survives_bash() {
        let nasty = r#"it's "$HOME" `id` $(id) \ ; & |"#;
        let script = format!("printf %s {}", shell_quote(nasty));
        let output = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(output.stdout).unwrap(), nasty);
    }

    #[test]
    fn ssh_quote_quotes_spaces_and_refuses_quotes() {
        assert_eq!(ssh_quote("~/.ssh/id").unwrap(), "~/.ssh/id");
        assert_eq!(ssh_quote("/my keys/id").unwrap(), "\"/my keys/id\"");
        assert!(ssh_quote("a\"b").is_err());
    }

    #[test]
    fn undefined_variables_are_errors() {
        let error = render("k3s-node.yaml.j2", minijinja::context! {}).unwrap_err();
        assert!(error.to_string().contains("k3s-node.yaml.j2"), "{error}");
    }
}
