//! Faults: a reload that cannot happen (the config file broken, invalid, gone, or naming
//! a command that does not exist) leaves the old generation serving under load, logs
//! why with the place, and shows in `steward status`; once fixed, the next reload works.

use std::process::Command;

use nix::sys::signal::Signal;

use steward_testkit::{demo_bin, field, steward_bin, steward_client, Steward, TestDir};

use crate::Load;

#[test]
fn a_reload_with_a_bad_config_keeps_the_old_generation_serving_and_says_why() {
    let dir = TestDir::new("faults");
    let file = dir.join("app.toml");
    let control = dir.join("control.sock");
    let good = format!(
        "listen = \"127.0.0.1:0\"\nworkers = 2\ncommand = [\"{}\"]\n",
        demo_bin()
    );
    std::fs::write(&file, &good).unwrap();
    let mut cmd = Command::new(steward_bin());
    cmd.arg("--config")
        .arg(&file)
        .arg("--control-socket")
        .arg(&control);
    let steward = Steward::spawn(cmd);
    steward.wait_generation_ready(1);
    let load = Load::start(steward.port());
    let path = file.display().to_string();

    let faults: [(&str, Option<String>, String); 4] = [
        (
            "a syntax error",
            Some("listen = \"127.0.0.1:0\"\nworkers = [2\n".to_owned()),
            format!("{path}:"),
        ),
        (
            "an invalid value",
            Some("listen = \"127.0.0.1:0\"\nworkers = \"two\"\n".to_owned()),
            format!("{path}:2: workers: invalid number"),
        ),
        ("a deleted file", None, path.clone()),
        (
            "a command that does not exist",
            Some("listen = \"127.0.0.1:0\"\ncommand = [\"steward-no-such-program\"]\n".to_owned()),
            "steward-no-such-program".to_owned(),
        ),
    ];
    for (fault, text, expected) in &faults {
        match text {
            Some(text) => std::fs::write(&file, text).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        let from = steward.log.len();
        steward.signal(Signal::SIGHUP);
        let (_, line) = steward.log.wait_event_from(from, "reload-failed", &[]);
        assert!(line.contains(expected), "{fault}: {line}");
        let hello = steward.get("/").unwrap();
        assert_eq!(hello.generation(), 1, "{fault}: {}", hello.body);

        let status = steward_client(&["status", "--control-socket", control.to_str().unwrap()]);
        let out = String::from_utf8_lossy(&status.stdout);
        assert!(status.status.success(), "{fault}: {out}");
        assert!(
            out.contains("last reload:") && out.contains("failed"),
            "{fault}: status does not show the failed reload:\n{out}"
        );
    }

    std::fs::write(&file, &good).unwrap();
    let from = steward.log.len();
    steward.signal(Signal::SIGHUP);
    let (_, done) = steward.log.wait_event_from(from, "reload-complete", &[]);
    let generation: u64 = field(&done, "generation").parse().unwrap();
    let (sent, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );
    assert_eq!(steward.get("/").unwrap().generation(), generation);
    drop(steward);
}
