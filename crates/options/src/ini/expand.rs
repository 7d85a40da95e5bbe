//! uWSGI's substitutions, in uWSGI's order (core/uwsgi.c, core/utils.c, core/config.c):
//!
//! 1. magic variables (`%d`, `%k`, ...) in each line as the file is read, so that a
//!    condition or a loop already sees them (`%(` is left for step 3);
//! 2. once the whole section is read (conditions and loops applied), `$(VAR)` in every
//!    value, from the environment, with `$(VAR:-default)` and `$(VAR-default)`;
//! 3. then `%(name)` in every value: the first value the section gives `name` (one set
//!    further down counts too), itself expanded; and `%(a b + 1)`, uWSGI's arithmetic
//!    (`+ - * /` on whole numbers, `++`, `--`, anything else concatenated).
//!
//! What uWSGI would leave as written (an unset variable, an unknown name) is left as
//! written here too, with a warning, so that a value that looks odd says why.

use std::{collections::HashMap, path::Path};

/// How many substitutions one value may take: uWSGI loops for ever on `a = %(a)`.
const MAX_SUBSTITUTIONS: usize = 1000;

/// The magic variables of a file: `%X` to its text.
pub(super) struct Magic {
    table: HashMap<char, String>,
}

impl Magic {
    /// The magic variables of the file at `path`, as uWSGI's config_magic_table_fill
    /// and its start-up set them.
    pub(super) fn new(path: &Path) -> Magic {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let shown = |p: Option<&std::ffi::OsStr>| {
            p.map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let dir = absolute.parent().unwrap_or(Path::new("/"));
        let mut dir_text = dir.display().to_string();
        if !dir_text.ends_with('/') {
            dir_text.push('/');
        }
        let mut table = HashMap::from([
            ('d', dir_text),
            ('p', absolute.display().to_string()),
            ('o', path.display().to_string()),
            ('s', shown(absolute.file_name())),
            ('n', shown(absolute.file_stem())),
            ('e', shown(absolute.extension())),
            ('c', shown(dir.file_name())),
            ('x', String::new()),
            (
                'k',
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .to_string(),
            ),
            ('%', "%".to_owned()),
        ]);
        // %0 .. %9: the directory's components; uppercase: the first file's (this one).
        for (digit, part) in ('0'..='9').zip(
            dir.components()
                .skip(1)
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .chain(std::iter::repeat(String::new())),
        ) {
            table.insert(digit, part);
        }
        if let Ok(metadata) = std::fs::symlink_metadata(&absolute) {
            table.insert(
                'i',
                std::os::unix::fs::MetadataExt::ino(&metadata).to_string(),
            );
        }
        table.insert('j', path_hash(&absolute.display().to_string()));
        for lower in ['o', 'd', 's', 'p', 'c', 'e', 'n', 'x', 'i'] {
            if let Some(value) = table.get(&lower).cloned() {
                table.insert(lower.to_ascii_uppercase(), value);
            }
        }
        table.extend(process_ids());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        table.insert('t', now.as_secs().to_string());
        table.insert('T', now.as_micros().to_string());
        if let Ok(cwd) = std::env::current_dir() {
            table.insert('v', cwd.display().to_string());
        }
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            table.insert('h', host.trim().to_owned());
        }
        Magic { table }
    }

    /// `line` with its magic variables replaced; `warn` hears of each one steward does
    /// not have (kept as written).
    pub(super) fn apply(&self, line: &str, warn: &mut dyn FnMut(String)) -> String {
        if !line.contains('%') {
            return line.to_owned();
        }
        let mut out = String::with_capacity(line.len());
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.clone().next() {
                // `%(` is a reference, read once the section is complete.
                Some('(') => out.push('%'),
                Some(next) => {
                    chars.next();
                    match self.table.get(&next) {
                        Some(text) => out.push_str(text),
                        None => {
                            warn(format!(
                                "uWSGI magic variable %{next} is not supported by steward; kept as written"
                            ));
                            out.push('%');
                            out.push(next);
                        }
                    }
                }
                None => out.push('%'),
            }
        }
        out
    }
}

/// uWSGI's `%j`: the djb33x hash of the file's absolute path, as the hex of its bytes
/// in memory (little-endian), uppercase, as uWSGI prints it.
fn path_hash(path: &str) -> String {
    let hash = path.bytes().fold(5381u32, |hash, byte| {
        // C's char is signed here: a byte above 0x7f is sign-extended before the xor.
        (hash << 5).wrapping_add(hash) ^ (byte as i8 as i32 as u32)
    });
    hash.to_le_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// `%u`, `%U`, `%g`, `%G`: the real user and group of the process, by number and by
/// name (from /etc/passwd and /etc/group; the number when the name is not found, as
/// uWSGI falls back to it).
fn process_ids() -> Vec<(char, String)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let real = |field: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("0")
            .to_owned()
    };
    let name = |file: &str, id: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|fields| fields.get(2) == Some(&id))
            .map_or_else(|| id.to_owned(), |fields| fields[0].to_owned())
    };
    let (uid, gid) = (real("Uid:"), real("Gid:"));
    vec![
        ('U', name("/etc/passwd", &uid)),
        ('G', name("/etc/group", &gid)),
        ('u', uid),
        ('g', gid),
    ]
}

/// Replaces each `SIGIL(inner)` of `value` (parentheses nest) with what `resolve` says
/// `inner` stands for, scanning the result again as uWSGI does; what `resolve` has no
/// value for is kept as written.
pub(super) fn substitute(
    value: &str,
    sigil: char,
    resolve: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = value.to_owned();
    let mut from = 0;
    let mut done = 0;
    let opening = format!("{sigil}(");
    while let Some(at) = out[from..].find(&opening).map(|at| at + from) {
        let inner_start = at + 2;
        let Some(end) = closing(&out[inner_start..]).map(|end| end + inner_start) else {
            break;
        };
        match resolve(&out[inner_start..end]) {
            Some(text) => {
                done += 1;
                if done > MAX_SUBSTITUTIONS {
                    return Err(format!(
                        "{value:?}: more than {MAX_SUBSTITUTIONS} substitutions: a reference refers to itself"
                    ));
                }
                out.replace_range(at..=end, &text);
                // Scan the replacement too: a value may hold further references.
                from = at;
            }
            None => from = end + 1,
        }
    }
    Ok(out)
}

/// The offset of the `)` that closes a reference whose text starts `text`.
fn closing(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(at),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// uWSGI's `$(...)`: `VAR`, `VAR:-DEFAULT` (unset or empty) or `VAR-DEFAULT` (unset).
pub(super) fn environment(inner: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let Some((name, default)) = inner.split_once(":-") {
        return Some(
            env(name)
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned()),
        );
    }
    if let Some((name, default)) = inner.split_once('-') {
        return Some(env(name).unwrap_or_else(|| default.to_owned()));
    }
    env(inner)
}

/// uWSGI's `%(...)` (uwsgi_manage_placeholder): a name alone is `option(name)`; words
/// separated by spaces are a little pipeline of numbers, names and operators.
pub(super) fn placeholder(inner: &str, option: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if !inner.contains(' ') {
        return option(inner);
    }
    #[derive(Clone, Copy)]
    enum Op {
        Concat,
        Add,
        Sub,
        Mul,
        Div,
    }
    let number = |text: &str| -> i64 {
        let digits = text
            .trim_start()
            .char_indices()
            .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
            .count();
        text.trim_start()[..digits].parse().unwrap_or(0)
    };
    let mut current: Option<String> = None;
    let mut op = Op::Concat;
    for token in inner.split(' ').filter(|t| !t.is_empty()) {
        let step = match token {
            "+" => Some(Op::Add),
            "-" => Some(Op::Sub),
            "*" => Some(Op::Mul),
            "/" => Some(Op::Div),
            _ => None,
        };
        if let Some(step) = step {
            op = step;
            continue;
        }
        if token == "++" || token == "--" {
            if let Some(value) = &current {
                let delta = if token == "++" { 1 } else { -1 };
                current = Some((number(value) + delta).to_string());
            }
            op = Op::Concat;
            continue;
        }
        let value = if token.bytes().all(|b| b.is_ascii_digit()) {
            token.to_owned()
        } else {
            option(token).unwrap_or_default()
        };
        let (a, b) = (current.as_deref().map_or(0, number), number(&value));
        current = Some(match op {
            Op::Concat => current.unwrap_or_default() + &value,
            Op::Add => a.wrapping_add(b).to_string(),
            Op::Sub => a.wrapping_sub(b).to_string(),
            Op::Mul => a.wrapping_mul(b).to_string(),
            // uWSGI's guard: a division by zero is 0.
            Op::Div => a.checked_div(b).unwrap_or(0).to_string(),
        });
        op = Op::Concat;
    }
    current
}
