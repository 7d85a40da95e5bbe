//! Native journald logging: each tracing event becomes one journal record, with the
//! master's worker fields as journal fields of their own, so that
//! `journalctl -u steward@app WORKER_ID=3` finds one worker's story.
//!
//! tracing-journald was the first choice; it names every field `F_<NAME>` or `<NAME>`
//! and cannot rename one, while steward's events say `worker=` and `pid=` (short on
//! stderr) and the journal wants `WORKER_ID=` and `WORKER_PID=`.

use std::{fmt::Write as _, io, os::unix::net::UnixDatagram, path::Path};

use tracing::{
    field::{Field, Visit},
    Event, Level, Subscriber,
};
use tracing_subscriber::{layer::Context, Layer};

/// Where journald reads native records.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// A tracing layer that sends every event to journald.
#[derive(Debug)]
pub struct JournalLayer {
    socket: UnixDatagram,
    identifier: String,
    fixed: Vec<(String, String)>,
}

impl JournalLayer {
    /// A layer sending to journald's socket at `path` ([`JOURNAL_SOCKET`]), records
    /// tagged `SYSLOG_IDENTIFIER=identifier`.
    pub fn connect(path: &Path, identifier: &str) -> io::Result<JournalLayer> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(JournalLayer {
            socket,
            identifier: identifier.to_owned(),
            fixed: Vec::new(),
        })
    }

    /// Adds `name=value` to every record: `VASSAL=` in an emperor's vassal, so that
    /// `journalctl VASSAL=app.toml` finds one vassal's story.
    pub fn with_field(mut self, name: &str, value: &str) -> JournalLayer {
        self.fixed.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Sends records of other processes' output lines (a worker's) to journald, never
/// waiting: the socket is non-blocking, and a record journald cannot take at once is
/// refused with `WouldBlock` for the caller to count.
#[derive(Debug)]
pub struct JournalSender {
    socket: UnixDatagram,
    fixed: Vec<(String, String)>,
}

impl JournalSender {
    /// A sender to journald's socket at `path` ([`JOURNAL_SOCKET`]).
    pub fn connect(path: &Path) -> io::Result<JournalSender> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        socket.set_nonblocking(true)?;
        Ok(JournalSender {
            socket,
            fixed: Vec::new(),
        })
    }

    /// Adds `name=value` to every record, as [`JournalLayer::with_field`].
    pub fn with_field(mut self, name: &str, value: &str) -> JournalSender {
        self.fixed.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends one record: `MESSAGE=message` and `fields` (journal field names).
    pub fn send(&self, message: &str, fields: &[(&str, &str)]) -> io::Result<()> {
        let mut record = Vec::with_capacity(message.len() + 160);
        push_field(&mut record, "MESSAGE", message);
        for (name, value) in fields {
            push_field(&mut record, name, value);
        }
        for (name, value) in &self.fixed {
            push_field(&mut record, name, value);
        }
        self.socket.send(&record).map(drop)
    }
}

/// The event's message and fields, in order.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push((field.name(), format!("{value:?}")));
        }
    }
}

/// The journal field for one of steward's event fields. `pid` is a worker's pid only in
/// an event about a worker.
fn journal_name(field: &str, about_a_worker: bool) -> String {
    match field {
        "worker" => "WORKER_ID".to_owned(),
        "generation" => "GENERATION".to_owned(),
        "pid" if about_a_worker => "WORKER_PID".to_owned(),
        // The emperor's events about a vassal share the field its vassal's records get.
        "vassal" => "VASSAL".to_owned(),
        // Journal field names are upper-case letters, digits and underscores, and those
        // starting with `_` are the journal's own.
        other => {
            let name: String = other
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("STEWARD_{}", name.trim_start_matches('_'))
        }
    }
}

fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Appends one field in journald's native format: `KEY=value\n`, or for a value with a
/// newline `KEY\n`, its length as 64-bit little endian, the value, `\n`.
fn push_field(record: &mut Vec<u8>, key: &str, value: &str) {
    record.extend_from_slice(key.as_bytes());
    if value.contains('\n') {
        record.push(b'\n');
        record.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        record.push(b'=');
    }
    record.extend_from_slice(value.as_bytes());
    record.push(b'\n');
}

/// The native record for one event. MESSAGE keeps the fields as `key=value` too, so
/// that plain `journalctl` reads like the stderr log.
fn encode_record(identifier: &str, level: &Level, fields: &Fields) -> Vec<u8> {
    let about_a_worker = fields.fields.iter().any(|(name, _)| *name == "worker");
    let mut message = fields.message.clone();
    for (name, value) in &fields.fields {
        let _ = write!(message, " {name}={value}");
    }
    let mut record = Vec::with_capacity(message.len() + 128);
    push_field(&mut record, "MESSAGE", &message);
    push_field(&mut record, "PRIORITY", &priority(level).to_string());
    push_field(&mut record, "SYSLOG_IDENTIFIER", identifier);
    for (name, value) in &fields.fields {
        push_field(&mut record, &journal_name(name, about_a_worker), value);
    }
    record
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut record = encode_record(&self.identifier, event.metadata().level(), &fields);
        for (name, value) in &self.fixed {
            push_field(&mut record, name, value);
        }
        // A lost log record must not stop the master; journald being away is rare and
        // would show in systemctl status anyway.
        let _ = self.socket.send(&record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn worker_fields_get_their_journal_names() {
        let fields = Fields {
            message: "worker started".into(),
            fields: vec![
                ("worker", "3".into()),
                ("generation", "2".into()),
                ("pid", "4242".into()),
                ("status", "a\nb".into()),
            ],
        };
        let record = encode_record("steward", &Level::INFO, &fields);
        // The message holds a newline, so it takes the length-prefixed form.
        let mut expected = Vec::new();
        push_field(
            &mut expected,
            "MESSAGE",
            "worker started worker=3 generation=2 pid=4242 status=a\nb",
        );
        expected.extend_from_slice(
            b"PRIORITY=6\nSYSLOG_IDENTIFIER=steward\nWORKER_ID=3\nGENERATION=2\nWORKER_PID=4242\nSTEWARD_STATUS\n",
        );
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(b"a\nb\n");
        assert_eq!(record, expected);
        assert!(record.starts_with(b"MESSAGE\n"));

        let master = Fields {
            message: "master started".into(),
            fields: vec![("pid", "1".into())],
        };
        let record = String::from_utf8(encode_record("steward", &Level::WARN, &master)).unwrap();
        assert!(record.contains("\nSTEWARD_PID=1\n"), "{record}");
        assert!(record.contains("\nPRIORITY=4\n"), "{record}");
    }

    #[test]
    fn a_vassal_field_goes_on_every_record_and_names_the_emperors_events_too() {
        let dir = std::env::temp_dir().join(format!("steward-journal-v-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("socket");
        let journal = UnixDatagram::bind(&path).unwrap();
        let layer = JournalLayer::connect(&path, "steward")
            .unwrap()
            .with_field("VASSAL", "app.toml");
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || tracing::info!("master started"));
        let sender = JournalSender::connect(&path)
            .unwrap()
            .with_field("VASSAL", "app.toml");
        sender
            .send("a worker's line", &[("WORKER_ID", "1")])
            .unwrap();
        let mut buf = vec![0u8; 4096];
        for _ in 0..2 {
            let n = journal.recv(&mut buf).unwrap();
            let record = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(record.ends_with("\nVASSAL=app.toml\n"), "{record:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(journal_name("vassal", false), "VASSAL");
    }

    #[test]
    fn events_reach_the_socket_as_records() {
        let dir = std::env::temp_dir().join(format!("steward-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("socket");
        let journal = UnixDatagram::bind(&path).unwrap();
        let layer = JournalLayer::connect(&path, "steward-test").unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(
                worker = 1,
                generation = 5,
                pid = 77,
                "worker exited unexpectedly"
            );
        });
        let mut buf = vec![0u8; 4096];
        let n = journal.recv(&mut buf).unwrap();
        let record = String::from_utf8_lossy(&buf[..n]).into_owned();
        for expected in [
            "MESSAGE=worker exited unexpectedly worker=1 generation=5 pid=77\n",
            "PRIORITY=3\n",
            "SYSLOG_IDENTIFIER=steward-test\n",
            "WORKER_ID=1\n",
            "GENERATION=5\n",
            "WORKER_PID=77\n",
        ] {
            assert!(record.contains(expected), "{expected:?} not in {record:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
