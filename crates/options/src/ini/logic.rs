//! uWSGI's config logic (core/config.c, add_exported_option_do), evaluated as uWSGI
//! evaluates it: `if-*` or `for*` opens a block that runs every following line of
//! the section through it until `endif`, `endfor`, `end` (or `else`, which opens the
//! other branch of the last condition). A condition is tested again for each line of
//! its body, a loop repeats each line of its body once per item, and `%(_)` in a
//! body's values is the condition's value or the loop's item. Blocks do not nest (uWSGI
//! exits on "recursive logic"); a block left open runs to the end of the section.

use std::path::Path;

/// One line of the section that stays once the logic has run.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) value: String,
    pub(super) line: usize,
}

/// What a block does with each line of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    Env,
    Opt,
    Exists,
    File,
    Dir,
    Plugin,
    Hostname,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// A condition; `true` for its `if-not-` form.
    If(Test, bool),
    Else,
    For,
    ForTimes,
    ForReadline,
}

/// The block a logic key opens, or why steward refuses it; None for any other key.
fn block(key: &str) -> Option<Result<Block, &'static str>> {
    use Block::*;
    use Test::*;
    Some(Ok(match key {
        "if-env" | "ifenv" => If(Env, false),
        "if-not-env" => If(Env, true),
        "if-opt" => If(Opt, false),
        "if-not-opt" => If(Opt, true),
        "if-exists" | "ifexists" => If(Exists, false),
        "if-not-exists" => If(Exists, true),
        "if-file" => If(File, false),
        "if-not-file" => If(File, true),
        "if-dir" | "ifdir" | "if-directory" => If(Dir, false),
        "if-not-dir" => If(Dir, true),
        "if-plugin" | "ifplugin" => If(Plugin, false),
        "if-not-plugin" => If(Plugin, true),
        "if-hostname" => If(Hostname, false),
        "if-not-hostname" => If(Hostname, true),
        "else" => Else,
        "for" => For,
        "for-times" => ForTimes,
        "for-readline" => ForReadline,
        "if-reload" | "if-not-reload" => {
            return Some(Err("steward reads the file again at each reload with nothing to tell a reload from a start, so the condition has no value here"))
        }
        "if-hostname-match" | "if-not-hostname-match" => {
            return Some(Err("steward has no regular expressions for the host name: use if-hostname"))
        }
        "for-glob" => return Some(Err("steward does not expand globs: list the items with for = A B C")),
        _ => return None,
    }))
}

/// Whether `key` ends every block (uWSGI's spellings).
fn is_end(key: &str) -> bool {
    matches!(key, "end" | "endif" | "end-if" | "endfor" | "end-for")
}

/// The lines of the section so far, with the first value of each key (uWSGI's
/// uwsgi_get_exported_opt, which `if-opt` and `%(name)` read).
#[derive(Debug, Default)]
pub(super) struct Collected {
    pub(super) entries: Vec<Entry>,
    /// Where each key first appears; built at the first look-up, as most files never
    /// look one up and a big one has a hundred thousand keys.
    first: std::cell::OnceCell<std::collections::HashMap<String, usize>>,
}

impl Collected {
    pub(super) fn push(&mut self, entry: Entry) {
        if let Some(first) = self.first.get_mut() {
            first.entry(entry.key.clone()).or_insert(self.entries.len());
        }
        self.entries.push(entry);
    }

    /// The first value given to `key`.
    pub(super) fn first(&self, key: &str) -> Option<&str> {
        let first = self.first.get_or_init(|| {
            let mut first = std::collections::HashMap::new();
            for (at, entry) in self.entries.iter().enumerate() {
                first.entry(entry.key.clone()).or_insert(at);
            }
            first
        });
        first.get(key).map(|&at| self.entries[at].value.as_str())
    }
}

/// What the logic needs from outside: the environment, and a place for warnings.
pub(super) struct Context<'a> {
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) warn: &'a mut dyn FnMut(usize, String),
}

/// The state of the logic along the section.
#[derive(Debug, Default)]
pub(super) struct Logic {
    /// The open block: what it is, its argument, the line that opened it.
    open: Option<(Block, String, usize)>,
    /// Whether the last condition was false (what `else` reads).
    failed: bool,
}

impl Logic {
    /// Runs one `key = value` of the section through the logic: it opens or closes a
    /// block, or is added to `out` as many times as the open block says.
    pub(super) fn feed(
        &mut self,
        entry: Entry,
        out: &mut Collected,
        cx: &mut Context<'_>,
    ) -> Result<(), String> {
        let key = entry.key.as_str();
        if is_end(key) {
            self.open = None;
            self.failed = false;
            return Ok(());
        }
        let opened = block(key);
        if key == "else" {
            // As uWSGI: `else` closes the block but keeps whether its condition failed.
            self.open = None;
        }
        if let Some((open, _, line)) = &self.open {
            if opened.is_some() {
                return Err(format!(
                    "{key} inside the {} block of line {line}: uWSGI's config logic does not nest (uWSGI exits with \"recursive logic in options is not supported\")",
                    block_name(*open)
                ));
            }
            return self.run(entry, out, cx);
        }
        match opened {
            Some(Ok(block)) => {
                if let Block::If(Test::Plugin, _) = block {
                    (cx.warn)(
                        entry.line,
                        format!("{key} = {}: steward loads no uWSGI plugins, so no plugin counts as loaded", entry.value),
                    );
                }
                self.open = Some((block, entry.value, entry.line));
                Ok(())
            }
            Some(Err(why)) => Err(format!("{key}: not supported: {why}")),
            None => {
                out.push(entry);
                Ok(())
            }
        }
    }

    /// A body line under the open block.
    fn run(
        &mut self,
        entry: Entry,
        out: &mut Collected,
        cx: &mut Context<'_>,
    ) -> Result<(), String> {
        let Some((block, arg, _)) = &self.open else {
            return Ok(());
        };
        let (block, arg) = (*block, arg.clone());
        let items: Vec<Option<String>> = match block {
            Block::If(test, negated) => {
                let (holds, underscore) = test_holds(test, &arg, out, cx);
                self.failed = holds == negated;
                if self.failed {
                    vec![]
                } else {
                    vec![underscore]
                }
            }
            Block::Else if self.failed => vec![None],
            Block::Else => vec![],
            Block::For => arg
                .split(' ')
                .filter(|t| !t.is_empty())
                .map(|t| Some(t.to_owned()))
                .collect(),
            Block::ForTimes => (1..=leading_number(&arg))
                .map(|i| Some(i.to_string()))
                .collect(),
            Block::ForReadline => match std::fs::read(&arg) {
                Ok(bytes) => String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(|line| Some(line.trim_end_matches('\r').to_owned()))
                    .collect(),
                Err(error) => {
                    (cx.warn)(entry.line, format!("for-readline = {arg}: cannot read it ({error}): this line is not applied, as in uWSGI"));
                    vec![]
                }
            },
        };
        for item in items {
            let value = match &item {
                Some(with) => entry.value.replace("%(_)", with),
                None => entry.value.clone(),
            };
            out.push(Entry {
                key: entry.key.clone(),
                value,
                line: entry.line,
            });
        }
        Ok(())
    }

    /// A block still open at the end of the section: uWSGI applies it to the end.
    pub(super) fn finish(&self, warn: &mut dyn FnMut(usize, String)) {
        if let Some((block, _, line)) = &self.open {
            warn(
                *line,
                format!(
                    "this {} block has no end (endif, endfor or end): as in uWSGI it covers the rest of the section",
                    block_name(*block)
                ),
            );
        }
    }
}

/// Whether `test` holds for `arg`, and what `%(_)` is then (None: the text is kept).
fn test_holds(test: Test, arg: &str, out: &Collected, cx: &Context<'_>) -> (bool, Option<String>) {
    let path = Path::new(arg);
    match test {
        Test::Env | Test::Opt => {
            // `NAME` (set) or `NAME=VALUE` (set to exactly that).
            let (name, wanted) = match arg.split_once('=') {
                Some((name, wanted)) => (name, Some(wanted)),
                None => (arg, None),
            };
            let value = match test {
                Test::Env => (cx.env)(name),
                _ => out.first(name).map(str::to_owned),
            };
            let holds = match (&value, wanted) {
                (Some(value), Some(wanted)) => value == wanted,
                (Some(_), None) => true,
                (None, _) => false,
            };
            (holds, value)
        }
        Test::Exists => {
            // uWSGI's uwsgi_file_exists is access(R_OK): opening for reading (a
            // directory too) asks the same.
            (std::fs::File::open(path).is_ok(), Some(arg.to_owned()))
        }
        Test::File => (path.is_file(), Some(arg.to_owned())),
        Test::Dir => (path.is_dir(), Some(arg.to_owned())),
        Test::Plugin => (false, Some(arg.to_owned())),
        Test::Hostname => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            (host.trim() == arg, Some(arg.to_owned()))
        }
    }
}

/// C's atoi: the leading whole number, 0 if there is none.
fn leading_number(text: &str) -> u64 {
    let digits: String = text
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(0)
}

fn block_name(block: Block) -> &'static str {
    match block {
        Block::If(..) => "if",
        Block::Else => "else",
        Block::For | Block::ForTimes | Block::ForReadline => "for",
    }
}
