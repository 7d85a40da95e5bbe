//! steward in preload mode without an async runtime: the blocking side of the API.
//!
//! Each worker serves every listening socket it gets, one thread per socket, and its
//! main thread blocks on the stop notice (`ctx.stop().wait()`), then returns. A request
//! is answered with one line: `index=I name=NAME kind=tcp|unix worker=ID generation=G
//! pid=PID`, where I and NAME are the socket's position and LISTEN_FDNAMES name.
//!
//! A `call:mark` hook appends `mark pid=PID` to the file `EXAMPLE_MARK_FILE` names, so
//! that `hook-master-start = call:mark` or `hook-accepting = call:mark` shows which
//! process ran it. `EXAMPLE_WORKER_FAILS=error|panic` makes the worker closure fail
//! before it serves. `EXAMPLE_THREAD_BEFORE_RUN=1` starts a thread before
//! `Builder::run`, which the master refuses.

use std::{
    io::{BufRead, BufReader, Write},
    process::ExitCode,
    thread,
};

use steward_master::{BoxError, Builder, WorkerContext, WorkerSocket};
use steward_options::ConfigSources;
use tracing::{info, warn};

fn mark() -> Result<(), BoxError> {
    let path = std::env::var_os("EXAMPLE_MARK_FILE").ok_or("EXAMPLE_MARK_FILE is not set")?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write(2) per line: with O_APPEND that lands whole, whereas writeln! on a File
    // writes piece by piece, and two workers marking at once interleave the pieces.
    file.write_all(format!("mark pid={}\n", std::process::id()).as_bytes())?;
    Ok(())
}

/// Answers every connection on `socket` with the line that identifies it.
fn serve_socket(socket: WorkerSocket, identity: String) {
    let answer = |stream: &mut dyn ReadWrite| {
        // The request head, up to its blank line; its content does not matter here.
        let mut reader = BufReader::new(&mut *stream);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim_end() != "" {
            line.clear();
        }
        let body = format!("{identity}\n");
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    loop {
        let accepted = match &socket {
            WorkerSocket::Tcp(listener) => listener
                .accept()
                .map(|(stream, _)| Box::new(stream) as Box<dyn ReadWrite>),
            WorkerSocket::Unix(listener) => listener
                .accept()
                .map(|(stream, _)| Box::new(stream) as Box<dyn ReadWrite>),
        };
        match accepted {
            Ok(mut stream) => answer(&mut *stream),
            Err(e) => warn!(error = %e, "accept failed"),
        }
    }
}

trait ReadWrite: std::io::Read + Write + Send {}
impl<T: std::io::Read + Write + Send> ReadWrite for T {}

fn worker(_: &(), mut ctx: WorkerContext) -> Result<(), BoxError> {
    match std::env::var("EXAMPLE_WORKER_FAILS").as_deref() {
        Ok("error") => return Err("the worker was told to fail".into()),
        Ok("panic") => panic!("the worker was told to panic"),
        _ => {}
    }
    for (index, listener) in ctx.take_listeners().into_iter().enumerate() {
        let kind = match listener.socket {
            WorkerSocket::Tcp(_) => "tcp",
            WorkerSocket::Unix(_) => "unix",
        };
        let identity = format!(
            "index={index} name={} kind={kind} worker={} generation={} pid={}",
            listener.name,
            ctx.id(),
            ctx.generation(),
            std::process::id()
        );
        // Threads started in the worker, after fork: they exist where they serve.
        thread::spawn(move || serve_socket(listener.socket, identity));
    }
    ctx.ready()?;
    ctx.stop().wait();
    // Returning ends the process, and the serving threads with it.
    info!("stop notice received; the worker returns");
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let options = match ConfigSources::from_process(None, Vec::new()).load_without_command() {
        Ok(config) => config.options,
        Err(e) => {
            eprintln!("steward-example-blocking: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::var_os("EXAMPLE_THREAD_BEFORE_RUN").is_some() {
        // What a log writer or a runtime started in `main` does: the wrong place.
        let (started, running) = std::sync::mpsc::channel();
        thread::Builder::new()
            .name("early-thread".into())
            .spawn(move || {
                let _ = started.send(());
                loop {
                    thread::park();
                }
            })
            .expect("a thread");
        running.recv().expect("the thread runs");
    }
    match Builder::new(options)
        .call("mark", mark)
        .worker(worker)
        .run()
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("steward-example-blocking: {e}");
            ExitCode::FAILURE
        }
    }
}
