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
    clap_complete::generate(shell, &mut command, "provision", out);
    Ok(exit::OK)
}

pub(super) fn man(out: &mut dyn Write) -> Result<u8> {
    match clap_mangen::Man::new(Cli::command()).render(out) {
        // `provision man | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        other => other.map(|()| exit::OK).map_err(Into::into),
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
