//! The emperor's options about what every vassal gets: tyrant mode (each vassal runs as
//! its file's owner) and the files every vassal reads besides its own (README, "Emperor
//! mode").

use super::{base, no_clear, parse_bool, path, shown_path, Group, Kind, ListSeparator, OptionDef};

pub(super) fn options() -> Vec<OptionDef> {
    vec![
        def!(flag "emperor-tyrant", emperor_tyrant, Master, restart: true,
            "Emperor: each vassal runs as the owner (uid and gid) of its file, dropped before \
             its master starts; a root-owned file, or one asking for another uid, gid or \
             add-gid, is refused."),
        def!(flag "emperor-tyrant-nofollow", emperor_tyrant_nofollow, Master, restart: true,
            "Emperor, tyrant mode: a vassal file that is a symlink runs as the link's owner, \
             not its target's."),
        def!(paths "vassals-inherit", vassals_inherit, Master, restart: true,
            "Emperor: a file every vassal reads before its own (a template: the vassal's \
             file overrides it); repeatable. Read at each start and reload, not watched."),
        def!(paths "vassals-include", vassals_include, Master, restart: true,
            "Emperor: a file every vassal reads after its own (its values win); repeatable. \
             Read at each start and reload, not watched."),
    ]
}
