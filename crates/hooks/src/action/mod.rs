//! Hook actions: `name:arg` strings, parsed once, run when their phase comes.
//!
//! The parts, each readable alone: `parse` (the table of action names, uWSGI's
//! spellings among them, and how each reads its argument), `flags` (mount and umount
//! flags by name, both ways), `display` (an action written back as it parses),
//! `run` (doing what an action says), `shell` (the `/bin/sh -c` of exec and alarms)
//! and `wait` (the actions that wait for a path, a socket or a reader).

mod display;
mod error;
mod flags;
mod parse;
mod run;
mod shell;
mod wait;

use std::path::PathBuf;

use nix::mount::{MntFlags, MsFlags};

pub use self::{error::ActionError, parse::ActionParseError};
pub(crate) use self::{run::run_plain_waiting, shell::run_shell, wait::WaitTimeouts};

/// One thing a hook does, as uWSGI spells it: `mkdir:/run/app`, `exec:cmd`, `exit:3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `mkdir:PATH`: create a directory (its parents too); an existing one is fine.
    ///
    /// uWSGI's other names parse too: `cd` (chdir), `hostname` (sethostname), `creat`
    /// (create), `log` (print), `callret` (call: a callback's error is always a failure),
    /// and `writen`, `append`, `appendn` (write with a newline, appending, or both).
    Mkdir(PathBuf),
    /// `chdir:PATH`: change the working directory of the process running the hook.
    Chdir(PathBuf),
    /// `exec:COMMAND`: run COMMAND with `/bin/sh -c`; a non-zero exit is a failure.
    Exec(String),
    /// `safeexec:COMMAND`: as exec, but how the command ends is only logged, never a
    /// failure (uWSGI's safeexec).
    SafeExec(String),
    /// `call:NAME`: run the callback an embedding program registered under NAME.
    Call(String),
    /// `exit[:CODE]`: end the process with CODE (default 0).
    Exit(i32),
    /// `writefifo:PATH DATA`: write DATA to the FIFO at PATH; no reader is a failure.
    WriteFifo {
        /// The FIFO.
        path: PathBuf,
        /// What to write.
        data: String,
    },
    /// `create:PATH`: create PATH empty (truncated if it exists).
    Create(PathBuf),
    /// `write:PATH DATA`: write DATA to PATH, replacing its contents; `writen` adds a
    /// newline, `append` appends, `appendn` both.
    Write {
        /// The file.
        path: PathBuf,
        /// What to write.
        data: String,
        /// Added at the end of the file rather than replacing it (`append`, `appendn`).
        append: bool,
        /// Followed by a newline (`writen`, `appendn`).
        newline: bool,
    },
    /// `mount:FSTYPE SRC DST [FLAGS [DATA]]`: mount(2); FLAGS comma-separated
    /// (`ro,nosuid,bind,rec`), DATA the filesystem's options (`size=64m,mode=0755`).
    Mount {
        /// The filesystem type (`tmpfs`, `proc`, `none` for a bind mount).
        fstype: String,
        /// The source (`none`, a device, or a directory for a bind mount).
        source: String,
        /// Where to mount it.
        target: PathBuf,
        /// The mount flags.
        flags: MsFlags,
        /// The filesystem-specific options, mount(2)'s data.
        data: Option<String>,
    },
    /// `umount:PATH [FLAGS]`: umount2(2); FLAGS `detach`, `force`, `expire`, and
    /// uWSGI's `rec` (`recursive`): every mount below PATH first.
    Umount {
        /// The mount point.
        target: PathBuf,
        /// The unmount flags.
        flags: MntFlags,
        /// The mounts below `target` are unmounted first (`rec`).
        recursive: bool,
    },
    /// `print:TEXT`: write TEXT and a newline on standard output.
    Print(String),
    /// `sethostname:NAME`: set the host name (of the UTS namespace the process is in).
    SetHostname(String),
    /// `unlink:PATH`: remove the file PATH.
    Unlink(PathBuf),
    /// `alarm:NAME MSG`: raise the alarm NAME (an `alarm = NAME ...` handler) with MSG.
    Alarm {
        /// The alarm's name.
        name: String,
        /// The message it carries.
        message: String,
    },
    /// `putenv:VAR=VALUE`: set VAR in the master's environment, so the workers and the
    /// hooks started after it inherit it.
    PutEnv {
        /// The variable.
        name: String,
        /// Its value (may be empty).
        value: String,
    },
    /// `chmod:PATH MODE`: set PATH's permission bits to the octal MODE.
    Chmod {
        /// The file.
        path: PathBuf,
        /// The mode, up to 0o7777.
        mode: u32,
    },
    /// `chown:PATH USER GROUP` (names, looked up when it runs) or `chown2:PATH UID GID`
    /// (numbers).
    Chown {
        /// The file.
        path: PathBuf,
        /// The owner.
        user: Owner,
        /// The group.
        group: Owner,
    },
    /// `sticky:PATH`: add the sticky bit to PATH's mode.
    Sticky(PathBuf),
    /// `wait_for_fs:PATH`, `wait_for_file:PATH`, `wait_for_dir:PATH`: wait until PATH
    /// exists (as a file, a directory) or the `wait-for-fs-timeout` passes;
    /// `wait_for_socket:ADDR`: until ADDR (`HOST:PORT` or a unix socket path) accepts a
    /// connection or the `wait-for-socket-timeout` passes.
    WaitFor {
        /// What is waited for.
        kind: WaitKind,
        /// The path or address.
        target: String,
    },
    /// `spinningfifo:PATH DATA`: as writefifo, but retries until a reader opens the FIFO
    /// or the `wait-for-fs-timeout` passes.
    SpinningFifo {
        /// The FIFO.
        path: PathBuf,
        /// What to write.
        data: String,
    },
}

/// A user or group of `chown:` (a name) or `chown2:` (a number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A name from the user or group database.
    Name(String),
    /// A numeric id.
    Id(u32),
}

/// What a `wait_for_*` action waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// `wait_for_fs`: anything at the path.
    Fs,
    /// `wait_for_file`: a regular file.
    File,
    /// `wait_for_dir`: a directory.
    Dir,
    /// `wait_for_socket`: a socket that accepts a connection.
    Socket,
}

impl WaitKind {
    fn action_name(self) -> &'static str {
        match self {
            WaitKind::Fs => "wait_for_fs",
            WaitKind::File => "wait_for_file",
            WaitKind::Dir => "wait_for_dir",
            WaitKind::Socket => "wait_for_socket",
        }
    }
}
