//! `provision completions SHELL` and `provision man`: generated from the clap definitions.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use super::exit;
use crate::cli::{Cli, ShellArg};

pub(super) fn completions(shell: ShellArg, out: &mut dyn Write) -> Result<u8> {
    use clap_complete::Shell;
    let shell = match shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
        ShellArg::Powershell => Shell::PowerShell,
    };
    let mut command = Cli::command();
    // clap_complete panics when its writer fails: render into memory, then write once.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "provision", &mut script);
    write_all(out, &script)
}

/// Writes `bytes`; a reader that went away (`provision completions zsh | head`) is fine.
fn write_all(out: &mut dyn Write, bytes: &[u8]) -> Result<u8> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        other => other.map(|()| exit::OK).map_err(Into::into),
    }
}

pub(super) fn man(out: &mut dyn Write) -> Result<u8> {
    let page = man_page()?;
    write_all(out, &page)
}

/// One page, `provision(1)`: the top-level flags, every command with its own flags in a
/// COMMANDS section (no `provision-init(1)` sub-pages: none are generated), EXIT STATUS
/// and ENVIRONMENT.
fn man_page() -> std::io::Result<Vec<u8>> {
    let command = Cli::command();
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut text = String::from(".SH COMMANDS\n");
    for sub in command.get_subcommands() {
        commands_section(&mut text, "provision", sub);
    }
    text.push_str(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in EXIT_STATUS {
        text.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", roff(meaning)));
    }
    text.push_str(".SH ENVIRONMENT\n");
    for (name, meaning) in ENVIRONMENT {
        text.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(name), roff(meaning)));
    }
    page.extend_from_slice(text.as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// The exit codes of the contract (see `commands::exit`).
const EXIT_STATUS: &[(u8, &str)] = &[
    (
        exit::OK,
        "Success; for `plan --detailed-exitcode`: no changes.",
    ),
    (
        exit::ERROR,
        "An error: a bad config or command line (a mistyped flag too), a cloud error, a failed \
         step; `verify`: a violated check.",
    ),
    (
        exit::CHANGES,
        "`plan --detailed-exitcode` found changes (drift included).",
    ),
    (exit::LOCKED, "The environment is locked by another run."),
    (
        exit::INTERRUPTED,
        "Stopped by Ctrl-C; every finished step is saved in the state.",
    ),
];

/// The environment variables provision reads (the AWS chain's and its own).
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "AWS_PROFILE",
        "The profile of ~/.aws/config and ~/.aws/credentials to use (default: `default`).",
    ),
    (
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN",
        "Credentials, read before any profile.",
    ),
    (
        "AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE",
        "Other places for the two AWS files.",
    ),
    (
        "AWS_REGION",
        "Ignored for the environment's resources: the config's `region` wins.",
    ),
    (
        "AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_EC2, ...",
        "Send every AWS call (or one service's) to another endpoint, such as an emulator.",
    ),
    (
        "AWS_EC2_METADATA_DISABLED",
        "`true`: do not ask the EC2 instance metadata service for credentials.",
    ),
    (
        "HTTPS_PROXY, HTTP_PROXY, NO_PROXY",
        "The proxy the AWS calls go through, and the hosts reached directly.",
    ),
    (
        "PROVISION_EXTRA_REGIONS",
        "Comma-separated region names to accept besides the ones this build knows (a region \
         AWS opened after the build).",
    ),
    (
        "RANCHER_VERSION",
        "Read by the generated helm-template.sh at run time: overrides `[rancher] version`.",
    ),
    (
        "PROVISION_LOG",
        "A tracing filter (e.g. `provision=debug`) instead of the one -v/-q choose.",
    ),
    (
        "NO_COLOR",
        "Set and not empty: no colours, even on a terminal.",
    ),
];

/// `parent sub`'s heading, what it does and its own flags; then its sub-commands.
fn commands_section(text: &mut String, parent: &str, sub: &clap::Command) {
    if sub.is_hide_set() {
        return;
    }
    let name = format!("{parent} {}", sub.get_name());
    let mut usage = name.clone();
    for arg in sub.get_positionals() {
        let value = arg
            .get_value_names()
            .and_then(|v| v.first().map(ToString::to_string))
            .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
        if arg.is_required_set() {
            usage.push_str(&format!(" {value}"));
        } else {
            usage.push_str(&format!(" [{value}]"));
        }
    }
    text.push_str(&format!(".SS \"{}\"\n", roff(&usage)));
    if let Some(about) = sub.get_long_about().or(sub.get_about()) {
        text.push_str(&format!("{}\n", roff(&about.to_string())));
    }
    for arg in sub.get_arguments() {
        if arg.is_hide_set() || arg.is_global_set() || arg.get_id() == "help" {
            continue;
        }
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => {
                let mut flag = format!("--{long}");
                if arg.get_action().takes_values() {
                    let value = arg
                        .get_value_names()
                        .and_then(|v| v.first().map(ToString::to_string))
                        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
                    flag.push_str(&format!(" {value}"));
                }
                flag
            }
            (None, Some(short)) => format!("-{short}"),
            (None, None) => arg
                .get_value_names()
                .and_then(|v| v.first().map(ToString::to_string))
                .unwrap_or_else(|| arg.get_id().to_string().to_uppercase()),
        };
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let mut values = String::new();
        if arg.get_action().takes_values() {
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_string())
                .collect();
            if !possible.is_empty() {
                values.push_str(&format!(" [possible values: {}]", possible.join(", ")));
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() {
                values.push_str(&format!(" [default: {}]", defaults.join(", ")));
            }
        }
        text.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}{}\n",
            roff(&flag),
            roff(&help),
            roff(&values)
        ));
    }
    for nested in sub.get_subcommands() {
        commands_section(text, &name, nested);
    }
}

/// Text safe in a roff line: backslashes and dashes escaped, no line starting with a
/// control character, no stray newlines.
fn roff(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\e")
        .replace('-', "\\-")
        .replace('\n', " ");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_commands() {
        for shell in [
            ShellArg::Bash,
            ShellArg::Zsh,
            ShellArg::Fish,
            ShellArg::Powershell,
        ] {
            let mut out = Vec::new();
            completions(shell, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            for word in ["provision", "apply", "destroy", "completions", "yes"] {
                assert!(text.contains(word), "{shell:?} lacks {word}");
            }
        }
    }

    #[test]
    fn the_man_page_is_roff_with_every_command() {
        let mut out = Vec::new();
        man(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(".ie") || text.contains(".TH provision"),
            "{text}"
        );
        for word in ["apply", "destroy", "completions", "show"] {
            assert!(text.contains(word), "man page lacks {word}");
        }
    }

    #[test]
    fn the_man_page_names_no_sub_page_and_has_exit_status_and_environment() {
        let mut out = Vec::new();
        man(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        // clap_mangen's own SUBCOMMANDS section points at provision-init(1) and the like,
        // pages nobody generates.
        assert!(!text.contains("provision\\-init(1)"), "{text}");
        assert!(!text.contains("(1)"), "{text}");
        assert!(text.contains(".SH \"EXIT STATUS\""), "{text}");
        assert!(text.contains(".SH ENVIRONMENT"), "{text}");
        assert!(text.contains("AWS_ENDPOINT_URL"), "{text}");
        // Every command is on the page, with its own flags; nested ones too.
        assert!(
            text.contains(".SS \"provision apply [PLANFILE]\""),
            "{text}"
        );
        assert!(text.contains("\\fB\\-\\-allow\\-data\\-loss\\fR"), "{text}");
        assert!(text.contains(".SS \"provision state show ID\""), "{text}");
        for code in [
            "\\fB0\\fR",
            "\\fB1\\fR",
            "\\fB2\\fR",
            "\\fB3\\fR",
            "\\fB130\\fR",
        ] {
            assert!(text.contains(code), "no exit status {code}: {text}");
        }
    }

    /// A writer whose reader went away, as stdout under `| head`.
    struct ClosedPipe;
    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        for shell in [ShellArg::Bash, ShellArg::Zsh] {
            assert_eq!(completions(shell, &mut ClosedPipe).unwrap(), exit::OK);
        }
        assert_eq!(man(&mut ClosedPipe).unwrap(), exit::OK);
    }

    #[test]
    fn every_command_has_an_example_in_its_help() {
        let command = Cli::command();
        for sub in command.get_subcommands() {
            let after = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                after.contains("Example:") && after.contains("provision "),
                "`provision {}` --help has no example",
                sub.get_name()
            );
        }
    }
}
