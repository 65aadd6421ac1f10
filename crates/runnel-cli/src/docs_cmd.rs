//! `runnel completions SHELL` and `runnel man --dir DIR`: the command tree, as clap knows it,
//! turned into a shell completion script and into man pages, so that both always match the
//! binary that wrote them. `runnel docs config-reference`: the configuration reference
//! (`docs/configuration.md`), from the settings' own definitions (`config_reference`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use clap_complete::Shell;

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Where to write the pages (created if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct DocsArgs {
    #[command(subcommand)]
    command: DocsCommand,
}

#[derive(Debug, Subcommand)]
enum DocsCommand {
    /// Print the configuration reference as Markdown: every broker, topic, client, Streams
    /// and Connect setting, with its Kafka name, type, default, valid values and whether it
    /// changes at runtime (docs/configuration.md is this output).
    ConfigReference,
}

/// Prints the document `args` asks for to stdout.
pub(crate) fn docs(args: &DocsArgs, command: clap::Command) -> anyhow::Result<()> {
    match args.command {
        DocsCommand::ConfigReference => {
            crate::output::print_stdout(&crate::config_reference::render(&command))
        }
    }
}

/// Prints the completion script for `args.shell` to stdout.
pub(crate) fn completions(
    args: &CompletionsArgs,
    mut command: clap::Command,
) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "runnel", &mut script);
    let script = String::from_utf8(script).context("the completion script is not UTF-8")?;
    crate::output::print_stdout(&script)
}

/// Writes `runnel.1`, `runnel-topic.1`, `runnel-topic-create.1`... into `args.dir`.
pub(crate) fn man_pages(args: &ManArgs, command: clap::Command) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    clap_mangen::generate_to(command, &args.dir)
        .with_context(|| format!("cannot write man pages to {}", args.dir.display()))?;
    eprintln!("Wrote the man pages to {}.", args.dir.display());
    Ok(())
}
