//! A terminal program under test, as a person sees it: run in a detached tmux session
//! of a fixed size, typed at with send-keys, read with capture-pane.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use crate::DEADLINE;

/// A tmux session running one program; killed when dropped.
#[derive(Debug)]
pub struct Terminal {
    session: String,
}

impl Terminal {
    /// Whether tmux is installed (`.ci/run` installs it); tests skip without it.
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Runs `command` (argv) in a new `width`x`height` session.
    pub fn start(name: &str, width: u16, height: u16, command: &[&str]) -> Terminal {
        let session = format!("{name}-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg("--")
            .args(command)
            .env("TERM", "xterm-256color")
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        // The screen stays after the program ends, for its last words.
        let _ = Command::new("tmux")
            .args(["set-option", "-t", &session, "remain-on-exit", "on"])
            .status();
        Terminal { session }
    }

    /// The screen as text, one line per row.
    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("run tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `ready`; returns it. Fails after [`DEADLINE`]
    /// with the last screen.
    pub fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}:\n{screen}"
            );
            // Polling the screen is the only way to see it: tmux has no change event.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `keys` (tmux key names: `q`, `+`, `Enter`).
    pub fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .expect("run tmux send-keys");
        assert!(status.success());
    }

    /// Whether the program has exited (tmux marks the pane dead).
    pub fn exited(&self) -> bool {
        let out = Command::new("tmux")
            .args(["display-message", "-p", "-t", &self.session, "#{pane_dead}"])
            .output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}
