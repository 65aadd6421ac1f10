//! `runnel completions SHELL` and `runnel man --dir DIR`: the command tree, as clap knows it,
//! turned into a shell completion script and into man pages, so that both always match the
//! binary that wrote them.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
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
