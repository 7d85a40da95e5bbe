//! stdout and stderr for the commands that print (`check`, `status`, `reload`, ...):
//! a reader that has gone away (`steward status | head -3`) ends the output, not the
//! program with a panic, and the exit status stays the command's own.

use std::io::Write;

/// Writes `text` on stdout; a closed or failing stdout is ignored.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Writes `text` on stderr; a closed or failing stderr is ignored.
pub fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Writes each of `lines` and a newline on stderr, buffered (a check may have a
/// hundred thousand warnings); a closed or failing stderr is ignored.
pub fn err_lines(lines: impl Iterator<Item = String>) {
    let mut stderr = std::io::BufWriter::new(std::io::stderr().lock());
    for line in lines {
        if writeln!(stderr, "{line}").is_err() {
            return;
        }
    }
    let _ = stderr.flush();
}

/// [`out`] of one line.
pub fn line(text: impl std::fmt::Display) {
    out(&format!("{text}\n"));
}

/// [`err`] of one line.
pub fn err_line(text: impl std::fmt::Display) {
    err(&format!("{text}\n"));
}
