//! `steward generate`: the man pages and completions that the packages install.

use std::process::Command;

use steward_testkit::{steward_bin, TestDir};

fn generate(args: &[&str]) -> String {
    let output = Command::new(steward_bin())
        .arg("generate")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "steward generate {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_man_pages_document_every_subcommand_and_the_options() {
    // A directory generate has to make.
    let scratch = TestDir::new("generate-man");
    let dir = scratch.join("man");
    generate(&["man", dir.to_str().unwrap()]);
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "steward-check.1",
            "steward-emperor.1",
            "steward-reload.1",
            "steward-run.1",
            "steward-status.1",
            "steward-stop.1",
            "steward-top.1",
            "steward.1"
        ],
        "hidden subcommands (generate, reexec-check) get no page"
    );
    let main = std::fs::read_to_string(dir.join("steward.1")).unwrap();
    assert!(main.starts_with(".ie \\n(.g .ds Aq"), "roff: {main:.80}");
    assert!(main.contains(".TH steward 1"), "{main:.200}");
    // roff writes a dash as `\-`.
    for option in [
        "config",
        "listen",
        "workers",
        "worker-reload-mercy",
        "hook-asap",
    ] {
        let flag = format!("\\-\\-{}", option.replace('-', "\\-"));
        assert!(main.contains(&flag), "steward.1 lacks --{option}");
    }
    assert!(main.contains("SIGHUP graceful reload"), "the description");
    let reload = std::fs::read_to_string(dir.join("steward-reload.1")).unwrap();
    assert!(
        reload.contains("\\-\\-wait"),
        "steward-reload.1 lacks --wait"
    );

    assert_eq!(generate(&["man"]), main, "stdout holds the same steward.1");
}

/// Asks bash itself what it completes `steward WORD<TAB>` to, with the generated script.
fn bash_completes(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = format!(
        r#"source "$1"
COMP_WORDS=({line})
COMP_CWORD={cword}
COMP_LINE="{line}"
COMP_POINT=${{#COMP_LINE}}
_steward steward "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        cword = words.len() - 1,
    );
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program, "bash"])
        .arg(script)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_bash_completion_completes_subcommands_and_flags() {
    let scratch = TestDir::new("generate-bash");
    let dir = scratch.join("completions");
    generate(&["bash", dir.to_str().unwrap()]);
    let script = dir.join("steward.bash");
    assert!(
        script.exists(),
        "steward generate bash DIR writes steward.bash"
    );

    assert_eq!(bash_completes(&script, &["steward", "rel"]), ["reload"]);
    let stop_flags = bash_completes(&script, &["steward", "stop", "--"]);
    assert!(
        stop_flags.iter().any(|flag| flag == "--control-socket"),
        "{stop_flags:?}"
    );
    let run_flags = bash_completes(&script, &["steward", "--work"]);
    assert!(run_flags.contains(&"--workers".to_owned()), "{run_flags:?}");
}

#[test]
fn every_shell_gets_a_script() {
    for (shell, first_line) in [
        ("zsh", "#compdef steward"),
        ("fish", "# Print an optspec for argparse"),
        ("elvish", ""),
        ("bash", "_steward() {"),
    ] {
        let script = generate(&[shell]);
        assert!(
            script.starts_with(first_line) && script.contains("reload"),
            "{shell}: {script:.200}"
        );
    }
    let output = Command::new(steward_bin())
        .args(["generate", "powershell-7"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value 'powershell-7'"), "{stderr}");
}

#[test]
fn a_directory_that_cannot_be_made_is_named_in_the_error() {
    for what in ["man", "bash"] {
        let output = Command::new(steward_bin())
            .args(["generate", what, "/proc/steward-no-such-dir"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{what}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("cannot create /proc/steward-no-such-dir"),
            "{what}: {stderr}"
        );
    }
}
