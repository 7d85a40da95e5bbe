//! The first handover: text, one `KEY VALUE...` line per item under a
//! [`REEXEC_PROTOCOL`] line. Every steward before the typed handover writes it, and
//! reads nothing else, so this binary still reads it (a package upgrade from one of
//! those re-execs into this one) and still writes it for a binary whose check does not
//! say it reads more (a preload program of an older build).

use std::{path::PathBuf, str::FromStr, time::Duration};

use nix::unistd::Pid;

use super::{
    handover::{HandedListener, HandedSocket, HandedState, HandedWaiter, HandedWorker},
    Handover, HandoverError, REEXEC_PROTOCOL,
};

/// Paths and names go last on their lines, so that they may hold spaces.
pub(super) fn encode(handover: &Handover) -> String {
    let mut out = format!("{REEXEC_PROTOCOL}\npid {}\n", handover.pid);
    out += &format!(
        "generations {} {} {} {}\n",
        handover.current,
        handover.latest,
        handover.serving.map_or("-".into(), |g| g.to_string()),
        handover.desired
    );
    let reload = if handover.reload_chain {
        "chain"
    } else {
        "graceful"
    };
    out += &format!("reload {reload}\n");
    for l in &handover.listeners {
        out += &format!("listener {} {} {}\n", l.fd, u8::from(l.handed_over), l.name);
    }
    for (key, socket) in [("notify", &handover.notify), ("control", &handover.control)] {
        if let Some(HandedSocket { fd, path }) = socket {
            out += &format!("{key} {fd} {}\n", path.display());
        }
    }
    for w in &handover.waiters {
        out += &format!("waiter {} {}\n", w.fd, w.generation);
    }
    for w in &handover.workers {
        out += &encode_worker(w);
    }
    out
}

fn encode_worker(w: &HandedWorker) -> String {
    let (state, kill_in) = match w.state {
        HandedState::Starting => ("starting", None),
        HandedState::Ready => ("ready", None),
        HandedState::Stopping { kill_in } => ("stopping", Some(kill_in)),
        HandedState::Killed => ("stopping", None),
    };
    format!(
        "worker {} {} {} {state} {} {} {}\n",
        w.id,
        w.generation,
        w.pid,
        w.age.as_millis(),
        kill_in.map_or("-".into(), |d| d.as_millis().to_string()),
        u8::from(w.respawned)
    )
}

/// Reads a first-version handover; an error names its line.
pub(super) fn decode(text: &str) -> Result<Handover, HandoverError> {
    let mut handover = Handover::default();
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, first)) if first == REEXEC_PROTOCOL => {}
        other => {
            return Err(HandoverError::Legacy {
                line: 1,
                reason: format!(
                    "expected {REEXEC_PROTOCOL:?}, found {:?}",
                    other.map_or("", |(_, l)| l)
                ),
            })
        }
    }
    for (index, line) in lines {
        let mut fields = Fields::of(index + 1, line)?;
        fields.read_into(&mut handover)?;
    }
    Ok(handover)
}

/// The values of one line, read in order.
struct Fields<'a> {
    line: usize,
    text: &'a str,
    key: &'a str,
    words: std::str::SplitN<'a, char>,
}

impl<'a> Fields<'a> {
    fn of(line: usize, text: &'a str) -> Result<Fields<'a>, HandoverError> {
        let Some((key, rest)) = text.split_once(' ') else {
            return Err(bad(line, text, "no value"));
        };
        let count = match key {
            "listener" => 3,
            "notify" | "control" => 2,
            _ => usize::MAX,
        };
        Ok(Fields {
            line,
            text,
            key,
            words: rest.splitn(count, ' '),
        })
    }

    fn bad(&self, reason: &str) -> HandoverError {
        bad(self.line, self.text, reason)
    }

    fn word(&mut self) -> Result<&'a str, HandoverError> {
        self.words.next().ok_or_else(|| self.bad("too few values"))
    }

    fn num<T: FromStr>(&mut self) -> Result<T, HandoverError> {
        let word = self.word()?;
        word.parse().map_err(|_| self.bad("not a number"))
    }

    /// A number, or `-` for none.
    fn optional<T: FromStr>(&mut self) -> Result<Option<T>, HandoverError> {
        match self.word()? {
            "-" => Ok(None),
            word => word.parse().map(Some).map_err(|_| self.bad("not a number")),
        }
    }

    fn flag(&mut self) -> Result<bool, HandoverError> {
        Ok(self.word()? == "1")
    }

    fn socket(&mut self) -> Result<Option<HandedSocket>, HandoverError> {
        let fd = self.num()?;
        let path = PathBuf::from(self.word()?);
        Ok(Some(HandedSocket { fd, path }))
    }

    fn read_into(&mut self, handover: &mut Handover) -> Result<(), HandoverError> {
        match self.key {
            "pid" => handover.pid = self.num()?,
            "generations" => {
                handover.current = self.num()?;
                handover.latest = self.num()?;
                handover.serving = self.optional()?;
                handover.desired = self.num()?;
            }
            "reload" => handover.reload_chain = self.word()? == "chain",
            "listener" => handover.listeners.push(HandedListener {
                fd: self.num()?,
                handed_over: self.flag()?,
                name: self.word()?.to_owned(),
            }),
            "notify" => handover.notify = self.socket()?,
            "control" => handover.control = self.socket()?,
            "waiter" => handover.waiters.push(HandedWaiter {
                fd: self.num()?,
                generation: self.num()?,
            }),
            "worker" => handover.workers.push(self.worker()?),
            _ => return Err(self.bad("unknown key")),
        }
        Ok(())
    }

    fn worker(&mut self) -> Result<HandedWorker, HandoverError> {
        let id = self.num()?;
        let generation = self.num()?;
        let pid = Pid::from_raw(self.num()?);
        let state = self.word()?;
        let age = Duration::from_millis(self.num()?);
        let kill_in = self.optional()?.map(Duration::from_millis);
        let state = match (state, kill_in) {
            ("starting", _) => HandedState::Starting,
            ("ready", _) => HandedState::Ready,
            ("stopping", Some(kill_in)) => HandedState::Stopping { kill_in },
            ("stopping", None) => HandedState::Killed,
            _ => return Err(self.bad("unknown worker state")),
        };
        Ok(HandedWorker {
            id,
            generation,
            pid,
            state,
            age,
            respawned: self.flag()?,
            // The text format never carried one.
            recycle: None,
        })
    }
}

fn bad(line: usize, text: &str, reason: &str) -> HandoverError {
    HandoverError::Legacy {
        line,
        reason: format!("{reason}: {text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reexec::handover::tests::sample;

    /// A handover as the master built from the last text-only release writes it (its
    /// `Handover::encode`, byte for byte): a package upgrade from that release re-execs
    /// into this binary with it.
    const FROM_THE_TEXT_RELEASE: &str = "steward reexec 1\n\
        pid 42\n\
        generations 3 4 3 2\n\
        reload chain\n\
        listener 3 0 web\n\
        listener 4 1 admin\n\
        notify 5 /run/steward/app/steward.42.notify\n\
        control 6 /run/with space/control.sock\n\
        waiter 7 4\n\
        worker 1 3 101 starting 1500 - 0\n\
        worker 2 3 102 ready 1500 - 1\n\
        worker 3 3 103 stopping 1500 2500 0\n\
        worker 4 3 104 stopping 1500 - 1\n";

    #[test]
    fn a_handover_from_the_text_release_is_read() {
        // The text format has no pending recycles.
        let mut expected = sample();
        expected.workers.iter_mut().for_each(|w| w.recycle = None);
        assert_eq!(Handover::decode(FROM_THE_TEXT_RELEASE).unwrap(), expected);
    }

    #[test]
    fn a_handover_for_a_text_only_binary_is_written_as_it_reads_it() {
        assert_eq!(sample().encode(1).unwrap(), FROM_THE_TEXT_RELEASE);
    }

    #[test]
    fn a_foreign_or_broken_handover_is_refused_with_its_line() {
        let line = |text: &str| match Handover::decode(text).unwrap_err() {
            HandoverError::Legacy { line, reason } => (line, reason),
            other => panic!("{other}"),
        };
        assert_eq!(line("steward reexec 0\n").0, 1);
        let (at, reason) = line(&format!("{REEXEC_PROTOCOL}\npid x\n"));
        assert_eq!(at, 2);
        assert!(reason.contains("not a number"), "{reason}");
        let broken = format!("{REEXEC_PROTOCOL}\nworker 1 1 5 dancing 0 - 0\n");
        assert!(line(&broken).1.contains("unknown worker state"));
    }
}
