//! The `/bin/sh -c` behind `exec:`, `safeexec:`, `run-command-on-*` and `cmd:` alarms.

use std::{
    ffi::OsString,
    fs::File,
    io::Write,
    os::fd::{AsFd, OwnedFd},
    path::Path,
};

use nix::{
    errno::Errno,
    fcntl::OFlag,
    sys::wait::{waitpid, WaitStatus},
};
use steward_sys::{spawn, ChildFds, ExecPlan};

use super::ActionError;

/// Runs `command` with `/bin/sh -c`, `input` (if any) and a newline on its stdin, else
/// /dev/null; non-zero is an error. The shell is started as workers are (steward-sys):
/// its own process group, killed if steward dies, and no descriptor of steward's but
/// 0, 1 and 2, so a hook never holds a listening socket or anything steward inherited.
pub(crate) fn run_shell(command: &str, input: Option<&str>) -> Result<(), ActionError> {
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let argv = ["/bin/sh", "-c", command].map(OsString::from);
    let mut plan = ExecPlan::new(Path::new("/bin/sh"), &argv, &env, false)?;
    let (stdin, writer): (OwnedFd, Option<OwnedFd>) = match input {
        Some(_) => {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|errno| ActionError::Stdin(errno.into()))?;
            (read, Some(write))
        }
        None => (
            File::open("/dev/null").map_err(ActionError::Stdin)?.into(),
            None,
        ),
    };
    let fds = ChildFds {
        stdin: Some(stdin.as_fd()),
        output: None,
        sockets: &[],
    };
    let pid = spawn(&mut plan, &fds).map_err(ActionError::Shell)?;
    drop(stdin);
    if let (Some(input), Some(writer)) = (input, writer) {
        let mut writer = File::from(writer);
        // A command that does not read its stdin closes the pipe: that is its business.
        let _ = writer
            .write_all(input.as_bytes())
            .and_then(|()| writer.write_all(b"\n"));
    }
    let status = loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(ActionError::Wait)?,
        }
    };
    let failed = |status: String| ActionError::CommandFailed {
        command: command.to_owned(),
        status,
    };
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code) => Err(failed(format!("exit status {code}"))),
        WaitStatus::Signaled(_, signal, _) => Err(failed(format!("killed by {signal}"))),
        other => Err(failed(format!("{other:?}"))),
    }
}
