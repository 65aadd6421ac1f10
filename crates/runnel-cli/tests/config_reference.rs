//! `docs/configuration.md` is what `runnel docs config-reference` prints, byte for byte: the
//! reference is generated from the settings' definitions, and this test is what keeps the
//! committed copy from drifting when a setting, default or doc changes.

use std::path::Path;
use std::process::Command;

/// How to bring the file up to date; the generator's own header says the same.
const REGENERATE: &str = "cargo run -p runnel-cli -- docs config-reference > docs/configuration.md";

#[test]
fn docs_configuration_md_is_the_generated_reference() {
    let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["docs", "config-reference"])
        .output()
        .expect("the runnel binary runs");
    assert!(
        output.status.success(),
        "runnel docs config-reference failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = String::from_utf8(output.stdout).expect("the reference is UTF-8");
    assert!(
        generated.contains(REGENERATE),
        "the reference's header no longer gives the command this test tells people to run"
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        panic!(
            "docs/configuration.md is out of date with the code: regenerate it with\n\n    \
             {REGENERATE}\n\nfrom the repository root and commit it.\n\n{}",
            first_difference(&committed, &generated)
        );
    }
}

/// Where the two texts first part, with the lines around it, so that the failure says what
/// changed without dumping both files.
fn first_difference(committed: &str, generated: &str) -> String {
    let old: Vec<&str> = committed.lines().collect();
    let new: Vec<&str> = generated.lines().collect();
    let Some(line) = (0..old.len().max(new.len())).find(|&i| old.get(i) != new.get(i)) else {
        return "The files differ only in their line endings or final newline.".to_owned();
    };
    let mut report = format!("First difference at line {}:\n", line + 1);
    let show = |report: &mut String, sign: &str, lines: &[&str]| {
        if lines.len() <= line {
            report.push_str(&format!("{sign} (end of file)\n"));
        }
        for text in lines.iter().skip(line).take(3) {
            report.push_str(&format!("{sign} {text}\n"));
        }
    };
    show(&mut report, "- committed:", &old);
    show(&mut report, "+ generated:", &new);
    report
}
