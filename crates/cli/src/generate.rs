//! `steward generate man|bash|zsh|fish|elvish [DIR]`: the man pages and shell
//! completions, made from the very clap definition the binary parses with, so they
//! never drift from the flags.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::{Args, Command, ValueEnum};
use clap_complete::Shell;

/// What to generate, and where.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The man pages (steward.1 and one steward-SUBCOMMAND.1 for each subcommand) or
    /// the completion script of a shell.
    #[arg(value_enum)]
    what: Artifact,
    /// Write the files into DIR under their usual names (steward.1, steward.bash,
    /// _steward, steward.fish, steward.elv) instead of printing steward.1 or the
    /// script on stdout.
    dir: Option<PathBuf>,
}

/// Something `steward generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Artifact {
    Man,
    Bash,
    Zsh,
    Fish,
    Elvish,
}

impl Artifact {
    fn shell(self) -> Option<Shell> {
        match self {
            Artifact::Man => None,
            Artifact::Bash => Some(Shell::Bash),
            Artifact::Zsh => Some(Shell::Zsh),
            Artifact::Fish => Some(Shell::Fish),
            Artifact::Elvish => Some(Shell::Elvish),
        }
    }
}

/// Writes what was asked for from `cmd`, the command line definition of steward.
pub fn generate(args: GenerateArgs, mut cmd: Command) -> anyhow::Result<ExitCode> {
    let name = cmd.get_name().to_owned();
    // `help` as a subcommand would be a man page and a completion of its own.
    cmd = cmd.disable_help_subcommand(true);
    match (args.what.shell(), args.dir) {
        (Some(shell), None) => {
            // Into a buffer first: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, name, &mut script);
            write_stdout(&script)?;
        }
        (Some(shell), Some(dir)) => {
            create_dir(&dir)?;
            clap_complete::generate_to(shell, &mut cmd, name, &dir).with_context(|| {
                format!("cannot write the {shell} completion into {}", dir.display())
            })?;
        }
        (None, None) => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            write_stdout(&page)?;
        }
        (None, Some(dir)) => {
            create_dir(&dir)?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write on stdout")
}
