//! The contract between a master about to re-exec and the checks of the new binary:
//! the master sets [`REPORT_VARIABLE`], and the binary answers `reexec-check` and
//! `steward check` with a [`CheckReport`] as one JSON line on stdout, instead of the
//! text it writes for a person. A binary that does not know the variable (older than
//! the contract) answers `reexec-check` with [`REEXEC_PROTOCOL`] alone; without the
//! variable this one answers so too, and its `check` prints what an older master reads.

use serde::{Deserialize, Serialize};

use super::{handover::HANDOVER_VERSION, REEXEC_PROTOCOL};

/// Set (to `1`) by a master for the checks of the binary it may re-exec into.
pub(crate) const REPORT_VARIABLE: &str = steward_options::vars::CHECK_REPORT;

/// A binary's verdict on taking over from a running master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The newest handover version the binary reads (it reads every older one).
    pub protocol: u32,
    /// Whether a master started by it, with this configuration, would run.
    pub accepted: bool,
    /// Why not, when not.
    pub errors: Vec<CheckFinding>,
}

/// One reason a check refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFinding {
    /// Where the value at fault was written: `file:line`, the `STEWARD_*` variable or
    /// the flag, when known.
    pub origin: Option<String>,
    /// The whole message, as `steward check` would print it (origin included).
    pub message: String,
}

impl CheckReport {
    /// The report of this binary: accepted when nothing is in `errors`.
    pub fn new(errors: Vec<CheckFinding>) -> CheckReport {
        CheckReport {
            protocol: HANDOVER_VERSION,
            accepted: errors.is_empty(),
            errors,
        }
    }

    /// Whether a master asked for a report rather than text.
    pub fn requested() -> bool {
        std::env::var_os(REPORT_VARIABLE).is_some()
    }

    /// The report as the master reads it: one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report is plain data")
    }

    /// The report in a check's output, if it holds one.
    pub(crate) fn parse(output: &str) -> Option<CheckReport> {
        serde_json::from_str(output.trim()).ok()
    }

    /// The errors, as one reason for the log.
    pub(crate) fn reason(&self) -> String {
        let messages: Vec<&str> = self.errors.iter().map(|e| e.message.as_str()).collect();
        if messages.is_empty() {
            "refused, without a reason".to_owned()
        } else {
            messages.join("; ")
        }
    }
}

/// What this binary answers `reexec-check`: a report when a master asks for one, else
/// the protocol line every master reads.
pub fn reexec_check_answer() -> String {
    if CheckReport::requested() {
        CheckReport::new(Vec::new()).to_json()
    } else {
        REEXEC_PROTOCOL.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_as_written() {
        let report = CheckReport::new(vec![CheckFinding {
            origin: Some("app.toml:2".into()),
            message: "app.toml:2: workers: invalid number".into(),
        }]);
        assert!(!report.accepted);
        assert_eq!(CheckReport::parse(&report.to_json()), Some(report.clone()));
        assert_eq!(report.reason(), "app.toml:2: workers: invalid number");
        assert_eq!(
            CheckReport::parse("# steward configuration: app.toml"),
            None
        );
    }
}
