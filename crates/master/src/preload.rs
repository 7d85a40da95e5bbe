//! Preload mode: the master as a library that forks a closure. The app is loaded once
//! in the master (or, with `lazy-apps`, in each worker after fork) and each worker is
//! a fork of the master running the worker closure, instead of an exec'd command.

use std::{
    cell::OnceCell,
    fmt, io,
    net::TcpListener,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
        unix::net::UnixListener,
    },
    path::Path,
    rc::Rc,
    sync::Arc,
};

use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
pub use steward_hooks::CallError;
use steward_hooks::{Callbacks, Phase};
use steward_options::{ConfigSources, Options};
use steward_sys::StopNotice;
use steward_systemd::{Notifier, State};
use tracing::{error, warn};

use crate::{Master, MasterError};

/// What a load callback, a worker closure or a `call:` hook may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The variable `reexec-check` is asked through in preload mode: the program is the
/// user's, whose own argument parser may not know a `reexec-check` argument.
pub(crate) const REEXEC_CHECK_VARIABLE: &str = steward_options::vars::REEXEC_CHECK;

type LoadFn<A> = Box<dyn Fn() -> Result<A, BoxError>>;
type WorkerFn<A> = Box<dyn Fn(&A, WorkerContext) -> Result<(), BoxError>>;
/// A function run after each request by the worker that served it.
type AfterRequestFn = Box<dyn Fn() + Send + Sync>;

/// A master that forks a closure (preload mode): options in, a load callback, a worker
/// closure, named `call:` hooks and after-request hooks.
///
/// ```no_run
/// use std::io::Write;
/// use steward_master::Builder;
/// use steward_options::Options;
///
/// let mut options = Options::new(Vec::new());
/// options.listen.push("127.0.0.1:8000".parse().unwrap());
/// options.workers = 4;
/// Builder::new(options)
///     // Runs once in the master; each worker is a fork that shares these pages.
///     .load(|| Ok(vec![1u8; 64 << 20]))
///     .worker(|data, mut ctx| {
///         let listener = ctx.take_tcp_listener().expect("a TCP socket");
///         listener.set_nonblocking(true)?;
///         ctx.ready()?;
///         while !ctx.stop().requested() {
///             match listener.accept() {
///                 Ok((mut conn, _)) => {
///                     write!(conn, "HTTP/1.0 200 OK\r\n\r\n{} bytes\n", data.len())?;
///                     ctx.after_request();
///                 }
///                 Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
///                     std::thread::sleep(std::time::Duration::from_millis(10))
///                 }
///                 Err(e) => return Err(e.into()),
///             }
///         }
///         Ok(())
///     })
///     .run()
///     .unwrap();
/// ```
pub struct Builder<A> {
    options: Options,
    sources: Option<ConfigSources>,
    load: LoadFn<A>,
    worker: Option<WorkerFn<A>>,
    calls: CallHooks,
    after_request: Vec<AfterRequestFn>,
}

impl<A> fmt::Debug for Builder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("options", &self.options)
            .field("calls", &self.calls)
            .field("after_request", &self.after_request.len())
            .finish_non_exhaustive()
    }
}

impl Builder<()> {
    /// A master over `options` (their `command` is not used) that loads nothing.
    pub fn new(options: Options) -> Builder<()> {
        Builder {
            options,
            sources: None,
            load: Box::new(|| Ok(())),
            worker: None,
            calls: CallHooks::default(),
            after_request: Vec::new(),
        }
    }
}

impl<A: 'static> Builder<A> {
    /// The load callback: runs once in the master before the first worker is forked,
    /// or in each worker after fork under `lazy-apps`. What it returns is what every
    /// worker closure receives. A failure stops the master (exit 1) before any worker
    /// starts; under `lazy-apps` it fails the worker.
    ///
    /// Call it before [`Builder::worker`]: the worker closure takes the app's type, so
    /// one set before `load` is dropped (and `run` fails with
    /// [`MasterError::NoWorkerClosure`]).
    pub fn load<B, F>(self, load: F) -> Builder<B>
    where
        F: Fn() -> Result<B, BoxError> + 'static,
    {
        Builder {
            options: self.options,
            sources: self.sources,
            load: Box::new(load),
            worker: None,
            calls: self.calls,
            after_request: self.after_request,
        }
    }

    /// The worker closure: runs in each forked worker with the loaded app and the
    /// worker's [`WorkerContext`]; the worker exits 0 when it returns Ok, 1 with the
    /// error logged when it returns Err, 101 when it panics.
    pub fn worker<F>(mut self, worker: F) -> Self
    where
        F: Fn(&A, WorkerContext) -> Result<(), BoxError> + 'static,
    {
        self.worker = Some(Box::new(worker));
        self
    }

    /// Registers the function a `call:NAME` hook runs.
    pub fn call<F>(mut self, name: &str, hook: F) -> Self
    where
        F: Fn() -> Result<(), BoxError> + 'static,
    {
        // The executor reports a callback's failure as text.
        self.calls
            .register(name, move || hook().map_err(|e| e.to_string()));
        self
    }

    /// Registers a function the worker runs after each request: steward does not see
    /// requests, so the worker closure calls [`WorkerContext::after_request`] when it
    /// has answered one.
    pub fn after_request<F>(mut self, hook: F) -> Self
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.after_request.push(Box::new(hook));
        self
    }

    /// Reads the configuration again from `sources` at each reload that does not
    /// re-exec (lazy mode; a re-exec reads it anew anyway).
    pub fn reread_config_on_reload(mut self, sources: ConfigSources) -> Self {
        self.sources = Some(sources);
        self
    }

    /// Binds, loads the app (unless `lazy-apps`), forks the workers and runs until a
    /// shutdown completes, as [`Master::run`].
    ///
    /// Call it first thing in `main`, before any thread or async runtime starts (start
    /// those in the worker closure): the master reads its signals in this thread, so it
    /// refuses to start ([`MasterError::ThreadsAtStart`]) when others already run.
    ///
    /// Before a running master of this program re-execs for a reload, it runs the new
    /// binary with `STEWARD_REEXEC_CHECK=1`; `run` answers that check instead: it loads
    /// the app (unless `lazy-apps`), prints the handover protocol on stdout and exits 0,
    /// or prints why the load failed and exits 1, so that a build that cannot load its
    /// app is never exec'd. Print nothing on stdout before calling `run`.
    pub fn run(self) -> Result<(), MasterError> {
        let Some(worker) = self.worker else {
            return Err(MasterError::NoWorkerClosure);
        };
        let lazy = self.options.lazy_apps;
        if std::env::var_os(REEXEC_CHECK_VARIABLE).is_some() {
            answer_reexec_check(lazy, &self.load);
        }
        let app: Rc<OnceCell<A>> = Rc::new(OnceCell::new());
        let load = Rc::new(self.load);
        let entry: WorkerEntry = {
            let (app, load) = (Rc::clone(&app), Rc::clone(&load));
            Box::new(move |ctx: WorkerContext| {
                let result = match app.get() {
                    Some(app) => worker(app, ctx),
                    None => match load() {
                        Ok(app) => worker(&app, ctx),
                        Err(e) => {
                            error!(error = %e, "loading the app in the worker failed");
                            return 1;
                        }
                    },
                };
                match result {
                    Ok(()) => 0,
                    Err(e) => {
                        error!(error = %e, "worker failed");
                        1
                    }
                }
            })
        };
        let launch = ForkLaunch {
            entry,
            lazy,
            strict: self.options.strict_fork,
            after_request: self.after_request.into(),
            warned_threads: Vec::new(),
        };
        let mut master = Master::with_launch(self.options, Some(launch), self.calls)?;
        if let Some(sources) = self.sources {
            master.reread_config_on_reload(sources);
        }
        // The load happens here (preload), with pre-app and post-app around it, or in
        // each worker (lazy-apps), the master running them around each generation.
        if !lazy {
            master.run_app_phase(Phase::PreApp)?;
            let loaded = load().map_err(|e| MasterError::Load(e.to_string()))?;
            let _ = app.set(loaded);
            master.run_app_phase(Phase::PostApp)?;
        }
        master.run()
    }
}

/// Answers a running master's check before it re-execs into this binary; exits. This
/// process is that check, not a master: returning into the embedding program's main
/// would start serving, so it ends here.
fn answer_reexec_check<A>(lazy: bool, load: &LoadFn<A>) -> ! {
    if !lazy {
        if let Err(e) = load() {
            // stdout is what the master reads and logs.
            println!("loading the app failed: {e}");
            std::process::exit(1);
        }
    }
    println!("{}", crate::reexec_check_answer());
    std::process::exit(0)
}

/// Named functions for `call:NAME` hooks, registered with [`Builder::call`]: the hook
/// executor's own registry, so what the builder collects is what `call:` runs.
pub type CallHooks = Callbacks;

/// What a forked worker runs; returns its exit status.
type WorkerEntry = Box<dyn Fn(WorkerContext) -> i32>;

/// How the master starts a worker in preload mode.
pub(crate) struct ForkLaunch {
    entry: WorkerEntry,
    /// Whether the app loads in each worker (a reload then re-forks) rather than once
    /// in the master (a reload then re-execs the master so that new code loads).
    pub lazy: bool,
    strict: bool,
    after_request: Arc<[AfterRequestFn]>,
    /// The threads (tids) last warned about, so a warning is not repeated per fork.
    warned_threads: Vec<u32>,
}

impl fmt::Debug for ForkLaunch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForkLaunch")
            .field("lazy", &self.lazy)
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

impl ForkLaunch {
    /// For messages: what a worker runs.
    pub fn display(&self) -> &'static str {
        if self.lazy {
            "forked worker, app loaded lazily"
        } else {
            "forked worker, app preloaded"
        }
    }

    /// The thread guard: forking copies only the calling thread, so a thread started
    /// while loading the app does not exist in the workers, and any lock it held stays
    /// locked there forever. Warns (once per set of threads), or refuses under
    /// `strict-fork`.
    pub fn check_threads(&mut self) -> Result<(), MasterError> {
        // Runs before every fork: one directory read, and the names only when there is
        // something to say.
        let tids = thread_ids();
        if tids.len() <= 1 || (!self.strict && self.warned_threads == tids) {
            return Ok(());
        }
        let names = tids
            .iter()
            .map(|&tid| thread_name(tid))
            .collect::<Vec<_>>()
            .join(", ");
        if self.strict {
            return Err(MasterError::ThreadsAtFork {
                count: tids.len(),
                names,
            });
        }
        warn!(threads = tids.len(), names = %names,
            "the master has more than one thread at fork: threads started while loading the app do not exist in the workers, and locks they held stay locked there; start them in the worker closure, or set lazy-apps");
        self.warned_threads = tids;
        Ok(())
    }

    /// In the forked child: the worker's environment and sockets, then the closure.
    pub fn run_worker(
        &self,
        worker: WorkerIdentity<'_>,
        stop: StopNotice,
        socket_count: usize,
    ) -> i32 {
        if let Some(title) = worker.title {
            if let Err(e) = crate::procname::set_own_title(title) {
                warn!(error = %e, "cannot name the worker process");
            }
        }
        // The same environment an exec'd worker gets (command.rs), set in place.
        for variable in crate::command::WORKER_VARIABLES {
            std::env::remove_var(variable);
        }
        let shared = crate::command::shared_worker_env(worker.fd_names, worker.notify_socket);
        let own = crate::command::own_worker_env(worker.id, worker.generation);
        for (name, value) in shared.into_iter().chain(own) {
            std::env::set_var(name, value);
        }
        if socket_count > 0 {
            std::env::set_var("LISTEN_PID", std::process::id().to_string());
        }
        if let Some(watchdog) = worker.watchdog {
            std::env::set_var("WATCHDOG_USEC", watchdog.as_micros().to_string());
            std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        }

        let mut listeners = Vec::with_capacity(socket_count);
        for (fd, name) in (3..).zip(worker.fd_names) {
            match adopt_listener(fd, name) {
                Ok(listener) => listeners.push(listener),
                Err(e) => {
                    error!(fd, error = %e, "cannot take the listening socket in the worker");
                    return 1;
                }
            }
        }
        let notifier = match Notifier::new(Some(worker.notify_socket.as_os_str().to_owned())) {
            Ok(notifier) => notifier,
            Err(e) => {
                error!(error = %e, "cannot create the worker's notify socket");
                return 1;
            }
        };
        (self.entry)(WorkerContext {
            id: worker.id,
            generation: worker.generation,
            listeners,
            stop,
            notifier,
            after_request: AfterRequest(Arc::clone(&self.after_request)),
        })
    }
}

/// Which worker a fork becomes.
#[derive(Debug)]
pub(crate) struct WorkerIdentity<'a> {
    pub id: usize,
    pub generation: u64,
    /// The process name (procname options), if any.
    pub title: Option<&'a str>,
    pub fd_names: &'a [String],
    pub notify_socket: &'a Path,
    /// `worker-watchdog`: WATCHDOG_USEC for the worker, as an exec'd one gets it.
    pub watchdog: Option<std::time::Duration>,
}

fn adopt_listener(fd: RawFd, name: &str) -> io::Result<WorkerListener> {
    let owned: OwnedFd = steward_sys::adopt_inherited_socket(fd).map_err(io::Error::other)?;
    let address: SockaddrStorage = getsockname(owned.as_raw_fd())?;
    let socket = if address.family() == Some(AddressFamily::Unix) {
        WorkerSocket::Unix(UnixListener::from(owned))
    } else {
        WorkerSocket::Tcp(TcpListener::from(owned))
    };
    Ok(WorkerListener {
        name: name.to_owned(),
        socket,
    })
}

/// This process's thread ids, in order.
fn thread_ids() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut tids: Vec<u32> = tasks
        .filter_map(Result::ok)
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// A thread's name, from `/proc/self/task/TID/comm`; "?" once it is gone.
fn thread_name(tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|comm| comm.trim_end().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

/// This process's threads: (tid, name), by tid.
fn threads() -> Vec<(u32, String)> {
    thread_ids()
        .into_iter()
        .map(|tid| (tid, thread_name(tid)))
        .collect()
}

/// The names of this process's threads other than the calling one.
pub(crate) fn other_threads() -> Vec<String> {
    let me = nix::unistd::gettid().as_raw();
    threads()
        .into_iter()
        .filter(|(tid, _)| i64::from(*tid) != i64::from(me))
        .map(|(_, name)| name)
        .collect()
}

/// A listening socket as a forked worker receives it.
#[derive(Debug)]
pub struct WorkerListener {
    /// Its LISTEN_FDNAMES name.
    pub name: String,
    /// The socket.
    pub socket: WorkerSocket,
}

/// A TCP or a unix listening socket.
#[derive(Debug)]
pub enum WorkerSocket {
    /// `HOST:PORT`.
    Tcp(TcpListener),
    /// `unix:PATH`.
    Unix(UnixListener),
}

/// Runs the after-request hooks registered with [`Builder::after_request`]; cheap to
/// clone and `Send`, to be handed to the tasks or threads that serve requests.
#[derive(Clone)]
pub struct AfterRequest(Arc<[AfterRequestFn]>);

impl fmt::Debug for AfterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AfterRequest({} hooks)", self.0.len())
    }
}

impl AfterRequest {
    /// Runs every hook, in the order registered.
    pub fn run(&self) {
        self.0.iter().for_each(|hook| hook());
    }
}

/// What a forked worker gets: its id and generation, its listening sockets, the stop
/// notice and the way to say it is ready.
#[derive(Debug)]
pub struct WorkerContext {
    id: usize,
    generation: u64,
    listeners: Vec<WorkerListener>,
    stop: StopNotice,
    notifier: Notifier,
    after_request: AfterRequest,
}

impl WorkerContext {
    /// The worker's 1-based slot (STEWARD_WORKER_ID).
    pub fn id(&self) -> usize {
        self.id
    }

    /// The generation it belongs to: 1, then one more per reload (STEWARD_GENERATION).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Takes the listening sockets, in configured order (each only once).
    pub fn take_listeners(&mut self) -> Vec<WorkerListener> {
        std::mem::take(&mut self.listeners)
    }

    /// Takes the first TCP listening socket, if any.
    pub fn take_tcp_listener(&mut self) -> Option<TcpListener> {
        let index = self
            .listeners
            .iter()
            .position(|l| matches!(l.socket, WorkerSocket::Tcp(_)))?;
        match self.listeners.remove(index).socket {
            WorkerSocket::Tcp(listener) => Some(listener),
            WorkerSocket::Unix(_) => None,
        }
    }

    /// The notice that the master asked this worker to stop (the worker stop signal):
    /// [`StopNotice::wait`] blocks, [`StopNotice::requested`] polls, and
    /// [`StopNotice::fd`] is a pipe for an event loop (tokio's `pipe::Receiver`).
    pub fn stop(&self) -> &StopNotice {
        &self.stop
    }

    /// Tells the master this worker serves (`READY=1` on NOTIFY_SOCKET): under
    /// `ready = notify` or `auto` the previous generation may stop from then on.
    pub fn ready(&self) -> io::Result<()> {
        self.notifier.send(&[State::Ready])
    }

    /// Sends `WATCHDOG=1`: with `worker-watchdog`, a worker watched from its first
    /// heartbeat on is aborted and replaced when none comes for the interval
    /// (`WATCHDOG_USEC` in its environment; send at half of it, as for systemd).
    pub fn watchdog(&self) -> io::Result<()> {
        self.notifier.send(&[State::Watchdog])
    }

    /// Sends `STATUS=text`, shown by `steward status` for this worker.
    pub fn status(&self, text: &str) -> io::Result<()> {
        self.notifier.send(&[State::Status(text.to_owned())])
    }

    /// Runs the after-request hooks: call it after answering each request.
    pub fn after_request(&self) {
        self.after_request.run();
    }

    /// The after-request hooks as a handle for other threads or tasks.
    pub fn after_request_hooks(&self) -> AfterRequest {
        self.after_request.clone()
    }
}

impl AsFd for WorkerContext {
    /// The stop notice's descriptor.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stop.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_hooks_run_by_name_and_name_the_unknown() {
        let builder = Builder::new(Options::new(Vec::new()))
            .call("ok", || Ok(()))
            .call("fails", || Err("no database".into()));
        assert_eq!(builder.calls.names().collect::<Vec<_>>(), ["fails", "ok"]);
        builder.calls.call("ok").unwrap();
        assert_eq!(
            builder.calls.call("fails").unwrap_err().to_string(),
            "call:fails failed: no database"
        );
        assert!(builder
            .calls
            .call("nope")
            .unwrap_err()
            .to_string()
            .contains("call:nope: no function registered"));
    }

    #[test]
    fn call_hooks_are_what_the_hook_executor_checks_and_runs() {
        let ran = std::rc::Rc::new(std::cell::Cell::new(false));
        let flag = ran.clone();
        let builder = Builder::new(Options::new(Vec::new())).call("warm", move || {
            flag.set(true);
            Ok(())
        });
        let mut options = Options::new(Vec::new());
        options
            .hooks
            .push(("master-start".into(), "call:warm".into()));
        let hooks = steward_hooks::Hooks::new(&options, builder.calls).unwrap();
        hooks.run(Phase::MasterStart).unwrap();
        assert!(ran.get());

        options
            .hooks
            .push(("master-start".into(), "call:cold".into()));
        let err = steward_hooks::Hooks::new(&options, Callbacks::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("no callback registered as \"warm\""),
            "{err}"
        );
    }

    #[test]
    fn threads_are_listed_by_name() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("guard-probe".into())
            .spawn(move || wait.recv())
            .unwrap();
        // The name is set by the thread itself once it runs.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut listed = threads();
        while !listed.iter().any(|(_, name)| name == "guard-probe") {
            assert!(std::time::Instant::now() < deadline, "{listed:?}");
            std::thread::yield_now();
            listed = threads();
        }
        release.send(()).unwrap();
        thread.join().unwrap().unwrap();
        assert!(listed.len() >= 2, "{listed:?}");
    }

    #[test]
    fn what_a_worker_gets_can_move_into_a_spawned_task_or_thread() {
        // tokio::spawn and std::thread::spawn need Send + 'static.
        fn movable<T: Send + 'static>() {}
        movable::<WorkerContext>();
        movable::<WorkerListener>();
        movable::<AfterRequest>();
        movable::<StopNotice>();
    }

    #[test]
    fn a_worker_closure_dropped_by_a_later_load_is_an_error_that_says_so() {
        // `load` changes the app type, so a closure set before it cannot be kept.
        let err = Builder::new(Options::new(Vec::new()))
            .worker(|_, _| Ok(()))
            .load(|| Ok(7u8))
            .run()
            .unwrap_err();
        assert!(matches!(err, MasterError::NoWorkerClosure), "{err}");
        assert!(err.to_string().contains("after Builder::load"), "{err}");
    }
}
