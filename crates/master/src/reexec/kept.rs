//! The options a reload cannot change, handed to the new image apart from the
//! handover (in [`KEPT_VARIABLE`]), so that an image that does not know it (an older
//! one) ignores it rather than refusing the handover.

use steward_options::{table, Options};

use super::KEPT_VARIABLE;

/// Reads (and removes) the running options a previous image of this process left in
/// the environment.
pub(crate) fn take_kept() -> Option<String> {
    let text = std::env::var_os(KEPT_VARIABLE)?;
    std::env::remove_var(KEPT_VARIABLE);
    Some(text.to_string_lossy().into_owned())
}

/// The options a reload cannot change (the table's `needs_restart`), one `NAME VALUE`
/// line per value of each, with `\\` and newlines escaped; a name alone marks an
/// option with no value.
pub(crate) fn encode_kept(running: &Options) -> String {
    let mut out = String::new();
    for def in kept_defs() {
        let values = def.show(running);
        if values.is_empty() {
            out += &format!("{}\n", def.name());
        }
        for value in values {
            let escaped = value.replace('\\', "\\\\").replace('\n', "\\n");
            out += &format!("{} {escaped}\n", def.name());
        }
    }
    out
}

/// The running master's options, rebuilt from [`encode_kept`]'s text: the kept options
/// have the running values, the others their defaults.
pub(crate) fn decode_kept(text: &str) -> Result<Options, String> {
    let mut options = Options::new(Vec::new());
    let mut cleared = std::collections::HashSet::new();
    for line in text.lines() {
        let (name, value) = match line.split_once(' ') {
            Some((name, value)) => (name, Some(value)),
            None => (line, None),
        };
        let def = kept_defs()
            .find(|def| def.name() == name)
            .ok_or_else(|| format!("{name}: not an option a reload keeps"))?;
        if cleared.insert(name) {
            def.clear(&mut options);
        }
        if let Some(value) = value {
            let mut unescaped = String::with_capacity(value.len());
            let mut chars = value.chars();
            while let Some(c) = chars.next() {
                match (c, c == '\\') {
                    (_, true) => match chars.next() {
                        Some('n') => unescaped.push('\n'),
                        Some(other) => unescaped.push(other),
                        None => return Err(format!("{name}: a value ends in a lone \\")),
                    },
                    (c, false) => unescaped.push(c),
                }
            }
            def.apply(&mut options, &unescaped)
                .map_err(|e| format!("{name}: {e}"))?;
        }
    }
    Ok(options)
}

fn kept_defs() -> impl Iterator<Item = &'static table::OptionDef> {
    table::table()
        .iter()
        .filter(|def| def.key() == def.name() && def.needs_restart())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reload keeps crosses the exec intact: lists, flags, unset values, and
    /// text with backslashes or newlines.
    #[test]
    fn the_kept_options_cross_the_exec_intact() {
        let mut running = Options::new(Vec::new());
        let set = |options: &mut Options, name: &str, value: &str| {
            let def = table::table().iter().find(|d| d.name() == name).unwrap();
            def.apply(options, value).unwrap();
        };
        set(&mut running, "chdir", "/srv/a b");
        set(&mut running, "procname-master", "app \\master\nline");
        set(&mut running, "master-fifo", "/run/one.fifo");
        set(&mut running, "master-fifo", "/run/two.fifo");
        set(&mut running, "vacuum", "true");
        set(&mut running, "uid", "nobody");
        set(&mut running, "hook-as-user", "exec:echo a,b");
        set(&mut running, "listen", "127.0.0.1:8080");
        assert_eq!(decode_kept(&encode_kept(&running)).unwrap(), running);
        let defaults = Options::new(Vec::new());
        assert_eq!(decode_kept(&encode_kept(&defaults)).unwrap(), defaults);
    }

    #[test]
    fn an_unknown_kept_option_is_refused_by_name() {
        let error = decode_kept("workers 3\n").unwrap_err();
        assert!(error.starts_with("workers:"), "{error}");
    }
}
