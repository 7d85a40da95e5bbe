use std::{fmt, str::FromStr};

/// A point in steward's life where hooks run, in the order they come at start.
///
/// Emperor, vassal and gateway phases exist so that uWSGI configurations parse; they
/// belong to modes steward does not have yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Right after the configuration is read, before anything else. Fatal.
    Asap,
    /// Before any jailing or privilege drop. Fatal.
    PreJail,
    /// Inside the jail's new namespaces, before the chroot; in the child when jailing
    /// forks (a pid namespace). Fatal.
    InJail,
    /// After the chroot, before privileges drop; in the parent, outside, when jailing
    /// forks. Fatal.
    PostJail,
    /// The last chance to run something as root. Fatal.
    AsRoot,
    /// Right after privileges are dropped. Fatal.
    AsUser,
    /// When the master's loop starts.
    MasterStart,
    /// Before the app loads: in exec mode, in the master before each generation's
    /// workers are started. Fatal.
    PreApp,
    /// After the app loaded: in exec mode, in the master once every worker of a
    /// generation is ready. Fatal.
    PostApp,
    /// In each worker, before it starts accepting: in exec mode, in the master when a
    /// worker becomes ready.
    Accepting,
    /// In the first worker, before it starts accepting.
    Accepting1,
    /// As accepting, the first time each worker id does.
    AcceptingOnce,
    /// As accepting1, the first time worker 1 does.
    Accepting1Once,
    /// Before exit and before a reload.
    AsUserAtexit,
    /// For each auxiliary process (mule): in the master, before each start of it.
    AsMule,
    /// In each gateway when it starts.
    AsGateway,
    /// When the emperor starts.
    EmperorStart,
    /// When the emperor sent a stop message.
    EmperorStop,
    /// When the emperor sent a reload message.
    EmperorReload,
    /// When the connection to the emperor is lost.
    EmperorLost,
    /// When a vassal enters on-demand mode.
    AsOnDemandVassal,
    /// When the emperor sees a config change for an on-demand vassal.
    AsOnConfigVassal,
    /// In the emperor, before a vassal is spawned.
    AsEmperorBeforeVassal,
    /// In a vassal, before it drops privileges.
    AsVassalBeforeDrop,
    /// In the emperor, entering a vassal's namespace.
    AsEmperorSetns,
    /// In a vassal, before it execs. Fatal.
    AsVassal,
    /// In the emperor, after a vassal was spawned.
    AsEmperor,
}

/// A phase name that is not one of steward's (or uWSGI's).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown hook phase {given:?}{}", suggestion.map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default())]
pub struct PhaseError {
    given: String,
    suggestion: Option<&'static str>,
}

const PHASES: &[(Phase, &str, bool)] = &[
    (Phase::Asap, "asap", true),
    (Phase::PreJail, "pre-jail", true),
    (Phase::InJail, "in-jail", true),
    (Phase::PostJail, "post-jail", true),
    (Phase::AsRoot, "as-root", true),
    (Phase::AsUser, "as-user", true),
    (Phase::MasterStart, "master-start", false),
    (Phase::PreApp, "pre-app", true),
    (Phase::PostApp, "post-app", true),
    (Phase::Accepting, "accepting", false),
    (Phase::Accepting1, "accepting1", false),
    (Phase::AcceptingOnce, "accepting-once", false),
    (Phase::Accepting1Once, "accepting1-once", false),
    (Phase::AsUserAtexit, "as-user-atexit", false),
    (Phase::AsMule, "as-mule", false),
    (Phase::AsGateway, "as-gateway", false),
    (Phase::EmperorStart, "emperor-start", false),
    (Phase::EmperorStop, "emperor-stop", false),
    (Phase::EmperorReload, "emperor-reload", false),
    (Phase::EmperorLost, "emperor-lost", false),
    (Phase::AsOnDemandVassal, "as-on-demand-vassal", false),
    (Phase::AsOnConfigVassal, "as-on-config-vassal", false),
    (
        Phase::AsEmperorBeforeVassal,
        "as-emperor-before-vassal",
        false,
    ),
    (Phase::AsVassalBeforeDrop, "as-vassal-before-drop", false),
    (Phase::AsEmperorSetns, "as-emperor-setns", false),
    (Phase::AsVassal, "as-vassal", true),
    (Phase::AsEmperor, "as-emperor", false),
];

impl Phase {
    /// Every phase, in start order.
    pub fn all() -> impl Iterator<Item = Phase> {
        PHASES.iter().map(|(phase, _, _)| *phase)
    }

    fn entry(self) -> &'static (Phase, &'static str, bool) {
        PHASES
            .iter()
            .find(|(phase, _, _)| *phase == self)
            .expect("every phase is in the table")
    }

    /// The name used in `hook-<name>`.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// Whether a failing hook in this phase stops steward with exit status 1.
    pub fn is_fatal(self) -> bool {
        self.entry().2
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Phase {
    type Err = PhaseError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        if let Some((phase, _, _)) = PHASES.iter().find(|(_, name, _)| *name == given) {
            return Ok(*phase);
        }
        let suggestion = PHASES
            .iter()
            .map(|(_, name, _)| (edit_distance(given, name), *name))
            .filter(|(distance, _)| *distance <= 2)
            .min()
            .map(|(_, name)| name);
        Err(PhaseError {
            given: given.to_owned(),
            suggestion,
        })
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for phase in Phase::all() {
            assert_eq!(phase.name().parse::<Phase>(), Ok(phase));
        }
        assert_eq!(Phase::all().count(), PHASES.len());
    }

    #[test]
    fn fatal_phases_are_those_of_the_seed() {
        let fatal: Vec<&str> = Phase::all()
            .filter(|p| p.is_fatal())
            .map(Phase::name)
            .collect();
        assert_eq!(
            fatal,
            [
                "asap",
                "pre-jail",
                "in-jail",
                "post-jail",
                "as-root",
                "as-user",
                "pre-app",
                "post-app",
                "as-vassal"
            ]
        );
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let err = "as-roo".parse::<Phase>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown hook phase \"as-roo\" (did you mean \"as-root\"?)"
        );
        let err = "whenever".parse::<Phase>().unwrap_err();
        assert_eq!(err.to_string(), "unknown hook phase \"whenever\"");
    }
}
