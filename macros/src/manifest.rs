//! The name under which the crate being compiled depends on `framealloc`.
//!
//! A user who writes `fa = { package = "framealloc", … }` in their
//! `Cargo.toml` reaches the crate as `::fa`, so paths written as
//! `::framealloc` do not resolve. At expansion time the macros read
//! `$CARGO_MANIFEST_DIR/Cargo.toml` and look for that entry in the
//! `[dependencies]`, `[dev-dependencies]` and `[target.….dependencies]`
//! tables, in every TOML form cargo accepts for them: `name = "1"`, inline
//! tables (`fa = { package = "framealloc" }`), dotted keys
//! (`fa.package = "framealloc"`), table headers (`[dependencies.fa]`),
//! quoted keys. An entry `fa = { workspace = true }` takes its `package` from
//! the `[workspace.dependencies]` of the workspace root: the nearest ancestor
//! directory (the package's own first) whose manifest has a `[workspace]`
//! table, or the directory named by `package.workspace`.
//!
//! The scan is a small TOML reader: it flattens the document into
//! (key path, value) pairs and keeps only strings and `true`. It never
//! panics; anything it cannot read makes it give up, and the macros then
//! behave as if nothing were found: they write `::framealloc`.
//!
//! The name is used only when the choice is unambiguous: the ordinary
//! dependencies (including target-specific ones) decide if any of them is
//! `framealloc`, else the dev-dependencies do; if one of the deciding entries
//! is named `framealloc` itself, or they disagree on the name, the default
//! stays. Hyphens become underscores, as cargo does for the extern name.
//! `crate = path` always wins over all of this.

use std::path::{Path, PathBuf};

/// The package this scan looks for.
const PACKAGE: &str = "framealloc";

/// Deepest nesting of arrays and inline tables read before giving up.
const MAX_DEPTH: usize = 32;

/// The Rust name of `framealloc` in the crate being compiled, if it is not
/// `framealloc` (see the module docs); `None` when nothing usable is found.
pub(crate) fn renamed_framealloc() -> Option<String> {
    renamed_in_dir(&PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?))
}

/// [`renamed_framealloc`] for the package whose manifest is in `dir`.
fn renamed_in_dir(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    renamed_in(&text, || workspace_manifest(dir, &text))
}

/// The manifest text of the workspace root of the package in `dir` whose
/// manifest is `own`.
fn workspace_manifest(dir: &Path, own: &str) -> Option<String> {
    let pairs = flatten(own)?;
    let declared = pairs
        .iter()
        .find_map(|(path, value)| match (path.as_slice(), value) {
            ([package, workspace], Value::Str(root))
                if package == "package" && workspace == "workspace" =>
            {
                Some(dir.join(root))
            }
            _ => None,
        });
    if let Some(root) = declared {
        return std::fs::read_to_string(root.join("Cargo.toml")).ok();
    }
    if pairs
        .iter()
        .any(|(path, _)| path.first().is_some_and(|k| k == "workspace"))
    {
        return Some(own.to_owned());
    }
    dir.ancestors().skip(1).find_map(|ancestor| {
        let text = std::fs::read_to_string(ancestor.join("Cargo.toml")).ok()?;
        let pairs = flatten(&text)?;
        pairs
            .iter()
            .any(|(path, _)| path.first().is_some_and(|k| k == "workspace"))
            .then_some(text)
    })
}

/// The decision of [`renamed_framealloc`] on a manifest's text; `workspace`
/// gives the workspace root's manifest text, asked for only if an entry
/// inherits from it.
pub(crate) fn renamed_in(
    manifest: &str,
    workspace: impl FnOnce() -> Option<String>,
) -> Option<String> {
    let deps = dependencies(&flatten(manifest)?);
    let mut inherited: Option<Vec<Dependency>> = None;
    let mut workspace = Some(workspace);
    let mut package_of = |dep: &Dependency| -> Option<String> {
        if let Some(package) = &dep.package {
            return Some(package.clone());
        }
        if !dep.workspace {
            return Some(dep.name.clone());
        }
        if inherited.is_none() {
            let text = workspace.take().and_then(|f| f())?;
            let pairs = flatten(&text)?;
            inherited = Some(workspace_dependencies(&pairs));
        }
        let root = inherited.as_ref()?.iter().find(|d| d.name == dep.name)?;
        Some(root.package.clone().unwrap_or_else(|| root.name.clone()))
    };
    let mut normal = Vec::new();
    let mut dev = Vec::new();
    for dep in &deps {
        if package_of(dep).as_deref() == Some(PACKAGE) {
            if dep.dev { &mut dev } else { &mut normal }.push(dep.name.replace('-', "_"));
        }
    }
    let deciding = if normal.is_empty() { dev } else { normal };
    let first = deciding.first()?;
    if first == PACKAGE || deciding.iter().any(|name| name != first) {
        return None;
    }
    syn::parse_str::<syn::Ident>(first).ok()?;
    Some(first.clone())
}

/// One dependency entry, merged from all the pairs under its key.
#[derive(Debug, PartialEq)]
struct Dependency {
    /// The key: the name the crate sees (before `-` → `_`).
    name: String,
    /// `package = "…"`, if written.
    package: Option<String>,
    /// `workspace = true`.
    workspace: bool,
    /// In a dev-dependencies table.
    dev: bool,
}

/// The entries of the dependency tables the crate's code can use.
fn dependencies(pairs: &[(Vec<String>, Value)]) -> Vec<Dependency> {
    let mut deps: Vec<Dependency> = Vec::new();
    for (path, value) in pairs {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        let (table, rest) = match keys.as_slice() {
            ["target", _, table, rest @ ..] | [table, rest @ ..] => (*table, rest),
            [] => continue,
        };
        let dev = match table {
            "dependencies" => false,
            "dev-dependencies" | "dev_dependencies" => true,
            _ => continue,
        };
        if let [name, field @ ..] = rest {
            merge(&mut deps, name, field, value, dev);
        }
    }
    deps
}

/// The entries of `[workspace.dependencies]`.
fn workspace_dependencies(pairs: &[(Vec<String>, Value)]) -> Vec<Dependency> {
    let mut deps = Vec::new();
    for (path, value) in pairs {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        if let ["workspace", "dependencies", name, field @ ..] = keys.as_slice() {
            merge(&mut deps, name, field, value, false);
        }
    }
    deps
}

/// Adds what the pair `name.field… = value` says to the entry `name`.
fn merge(deps: &mut Vec<Dependency>, name: &str, field: &[&str], value: &Value, dev: bool) {
    let index = if let Some(i) = deps.iter().position(|d| d.name == name && d.dev == dev) {
        i
    } else {
        deps.push(Dependency {
            name: name.to_owned(),
            package: None,
            workspace: false,
            dev,
        });
        deps.len() - 1
    };
    let dep = &mut deps[index];
    match (field, value) {
        (["package"], Value::Str(package)) => dep.package = Some(package.clone()),
        (["workspace"], Value::True) => dep.workspace = true,
        _ => {}
    }
}

/// The values the scan keeps apart; everything else is `Other`.
#[derive(Debug, PartialEq)]
enum Value {
    /// Any TOML string, unescaped.
    Str(String),
    /// The boolean `true`.
    True,
    /// Numbers, `false`, dates, arrays, and the pair standing for an inline table.
    Other,
}

/// Every `key = value` of the document with its full key path (table header
/// plus dotted key); an inline table also yields its own pairs with the
/// longer paths. `None` if the text is not TOML this reader understands.
fn flatten(text: &str) -> Option<Vec<(Vec<String>, Value)>> {
    let mut reader = Reader {
        chars: text.chars().collect(),
        at: 0,
        pairs: Vec::new(),
    };
    reader.document()?;
    Some(reader.pairs)
}

/// The TOML reader's state.
struct Reader {
    /// The document.
    chars: Vec<char>,
    /// The next character to read.
    at: usize,
    /// What has been read.
    pairs: Vec<(Vec<String>, Value)>,
}

impl Reader {
    /// The next character, not consumed.
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    /// The character `n` places ahead, not consumed.
    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.at + n).copied()
    }

    /// Consumes `c` if it is next.
    fn eat(&mut self, c: char) -> bool {
        let next = self.peek() == Some(c);
        if next {
            self.at += 1;
        }
        next
    }

    /// Skips spaces and tabs.
    fn blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
    }

    /// Skips blanks, newlines and comments.
    fn space(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\n' | '\r') => self.at += 1,
                Some('#') => self.comment(),
                _ => return,
            }
        }
    }

    /// Skips a comment up to (not including) its newline.
    fn comment(&mut self) {
        while !matches!(self.peek(), None | Some('\n')) {
            self.at += 1;
        }
    }

    /// The rest of a line after a header or a pair: blanks, a comment.
    fn end_of_line(&mut self) -> Option<()> {
        self.blanks();
        if self.peek() == Some('#') {
            self.comment();
        }
        self.eat('\r');
        (self.eat('\n') || self.peek().is_none()).then_some(())
    }

    /// Headers and pairs until the end.
    fn document(&mut self) -> Option<()> {
        let mut table = Vec::new();
        loop {
            self.space();
            match self.peek() {
                None => return Some(()),
                Some('[') => {
                    self.at += 1;
                    let array = self.eat('[');
                    table = self.key()?;
                    if !self.eat(']') || (array && !self.eat(']')) {
                        return None;
                    }
                }
                Some(_) => {
                    let mut path = table.clone();
                    path.extend(self.key()?);
                    if !self.eat('=') {
                        return None;
                    }
                    self.value(path, true, 0)?;
                }
            }
            self.end_of_line()?;
        }
    }

    /// A dotted key, with the blanks around it.
    fn key(&mut self) -> Option<Vec<String>> {
        let mut parts = Vec::new();
        loop {
            self.blanks();
            let part = match self.peek()? {
                '"' => self.basic_string()?,
                '\'' => self.literal_string()?,
                _ => {
                    let start = self.at;
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    {
                        self.at += 1;
                    }
                    if self.at == start {
                        return None;
                    }
                    self.chars[start..self.at].iter().collect()
                }
            };
            parts.push(part);
            self.blanks();
            if !self.eat('.') {
                return Some(parts);
            }
        }
    }

    /// A value at `path`, recorded if `record` (not inside an array).
    fn value(&mut self, path: Vec<String>, record: bool, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.blanks();
        let value = match self.peek()? {
            '"' if self.peek_at(1) == Some('"') && self.peek_at(2) == Some('"') => {
                Value::Str(self.multiline('"')?)
            }
            '\'' if self.peek_at(1) == Some('\'') && self.peek_at(2) == Some('\'') => {
                Value::Str(self.multiline('\'')?)
            }
            '"' => Value::Str(self.basic_string()?),
            '\'' => Value::Str(self.literal_string()?),
            '{' => {
                self.at += 1;
                loop {
                    self.space();
                    if self.eat('}') {
                        break;
                    }
                    let mut inner = path.clone();
                    inner.extend(self.key()?);
                    if !self.eat('=') {
                        return None;
                    }
                    self.value(inner, record, depth + 1)?;
                    self.space();
                    if !self.eat(',') && self.peek() != Some('}') {
                        return None;
                    }
                }
                Value::Other
            }
            '[' => {
                self.at += 1;
                loop {
                    self.space();
                    if self.eat(']') {
                        break;
                    }
                    self.value(Vec::new(), false, depth + 1)?;
                    self.space();
                    if !self.eat(',') && self.peek() != Some(']') {
                        return None;
                    }
                }
                Value::Other
            }
            _ => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|c| !matches!(c, ',' | '}' | ']' | '#' | ' ' | '\t' | '\r' | '\n'))
                {
                    self.at += 1;
                }
                match self.chars[start..self.at]
                    .iter()
                    .collect::<String>()
                    .as_str()
                {
                    "" => return None,
                    "true" => Value::True,
                    _ => Value::Other,
                }
            }
        };
        if record {
            self.pairs.push((path, value));
        }
        Some(())
    }

    /// `"…"` with its escapes decoded.
    fn basic_string(&mut self) -> Option<String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek()? {
                '"' => {
                    self.at += 1;
                    return Some(out);
                }
                '\n' => return None,
                '\\' => out.push(self.escape()?),
                c => {
                    self.at += 1;
                    out.push(c);
                }
            }
        }
    }

    /// `'…'`, taken as written.
    fn literal_string(&mut self) -> Option<String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek()? {
                '\'' => {
                    self.at += 1;
                    return Some(out);
                }
                '\n' => return None,
                c => {
                    self.at += 1;
                    out.push(c);
                }
            }
        }
    }

    /// `"""…"""` or `'''…'''` (`quote` says which).
    fn multiline(&mut self, quote: char) -> Option<String> {
        self.at += 3;
        if self.peek() == Some('\n') {
            self.at += 1;
        } else if self.peek() == Some('\r') && self.peek_at(1) == Some('\n') {
            self.at += 2;
        }
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            if c == quote && self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote) {
                self.at += 3;
                // Up to two more quotes belong to the content.
                for _ in 0..2 {
                    if self.eat(quote) {
                        out.push(quote);
                    }
                }
                return Some(out);
            }
            if c == '\\' && quote == '"' {
                if matches!(self.peek_at(1), Some(' ' | '\t' | '\r' | '\n')) {
                    // A line-ending backslash: the whitespace after it goes.
                    self.at += 1;
                    while matches!(self.peek(), Some(' ' | '\t' | '\r' | '\n')) {
                        self.at += 1;
                    }
                } else {
                    out.push(self.escape()?);
                }
            } else {
                self.at += 1;
                out.push(c);
            }
        }
    }

    /// One escape sequence, the backslash next.
    fn escape(&mut self) -> Option<char> {
        self.at += 1;
        let c = self.peek()?;
        self.at += 1;
        let digits = match c {
            'b' => return Some('\u{8}'),
            't' => return Some('\t'),
            'n' => return Some('\n'),
            'f' => return Some('\u{c}'),
            'r' => return Some('\r'),
            'e' => return Some('\u{1b}'),
            '"' | '\\' => return Some(c),
            'x' => 2,
            'u' => 4,
            'U' => 8,
            _ => return None,
        };
        let hex: String = self.chars.get(self.at..self.at + digits)?.iter().collect();
        self.at += digits;
        char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::renamed_in;

    fn no_workspace() -> Option<String> {
        None
    }

    fn name(manifest: &str) -> Option<String> {
        renamed_in(manifest, no_workspace)
    }

    #[test]
    fn the_plain_forms_keep_the_default() {
        assert_eq!(name(""), None);
        assert_eq!(
            name("[package]\nname = \"k\"\n[dependencies]\nframealloc = \"0.1\"\n"),
            None
        );
        assert_eq!(
            name("[dependencies]\nframealloc = { path = \"../runtime\" }\n"),
            None
        );
        assert_eq!(
            name("[dependencies]\nframealloc = { package = \"framealloc\" }\n"),
            None
        );
        assert_eq!(name("[dependencies]\nx86_64 = \"0.15\"\n"), None);
        // Another package renamed to a name: not ours.
        assert_eq!(
            name("[dependencies]\nfa = { package = \"frame-alloc\" }\n"),
            None
        );
    }

    #[test]
    fn inline_tables_dotted_keys_and_headers() {
        assert_eq!(
            name("[dependencies]\nfa = { package = \"framealloc\", path = \"x\" }\n").as_deref(),
            Some("fa")
        );
        assert_eq!(
            name("[dependencies]\nfa = {path=\"x\",package='framealloc'}").as_deref(),
            Some("fa")
        );
        assert_eq!(
            name("[dependencies]\nfa.package = \"framealloc\"\nfa.path = \"x\"\n").as_deref(),
            Some("fa")
        );
        assert_eq!(
            name("[dependencies.fa]\npath = \"x\"\npackage = \"framealloc\"\n").as_deref(),
            Some("fa")
        );
        assert_eq!(
            name("dependencies.fa.package = \"framealloc\"\n").as_deref(),
            Some("fa")
        );
        assert_eq!(
            name("dependencies = { fa = { package = \"framealloc\" } }\n").as_deref(),
            Some("fa")
        );
        assert_eq!(
            name("[ dependencies . \"fa\" ]\npackage = \"framealloc\"\n").as_deref(),
            Some("fa")
        );
        assert_eq!(
            name("[dependencies]\n'my-fa' = { package = \"framealloc\" }\n").as_deref(),
            Some("my_fa")
        );
        // Escapes in the value and multi-line inline tables.
        assert_eq!(
            name("[dependencies]\nfa = { package = \"frame\\u0061lloc\" }\n").as_deref(),
            Some("fa")
        );
        assert_eq!(
            name(
                "[dependencies]\nfa = {\n  package = \"framealloc\", # here\n  path = \"x\",\n}\n"
            )
            .as_deref(),
            Some("fa")
        );
    }

    #[test]
    fn comments_and_strings_are_not_entries() {
        assert_eq!(
            name("[dependencies]\n# fa = { package = \"framealloc\" }\nx = \"1\"\n"),
            None
        );
        assert_eq!(
            name("[dependencies]\nx = \"1\" # fa = { package = \"framealloc\" }\n"),
            None
        );
        assert_eq!(
            name("[package]\ndescription = \"fa = { package = \\\"framealloc\\\" }\"\n"),
            None
        );
        assert_eq!(
            name(
                "[package]\ndescription = '''\n[dependencies]\nfa = { package = \"framealloc\" }\n'''\n"
            ),
            None
        );
        assert_eq!(
            name(
                "[package]\ndescription = \"\"\"\n[dependencies]\nfa.package = 'framealloc'\"\"\"\n"
            ),
            None
        );
        assert_eq!(
            name(
                "[package]\nkeywords = [\"package = framealloc\", { package = \"framealloc\" }]\n"
            ),
            None
        );
        // `package` as a dependency's name, with a string that is the word.
        assert_eq!(name("[dependencies]\npackage = \"framealloc\"\n"), None);
        // Other tables using the same keys.
        assert_eq!(
            name("[build-dependencies]\nfa = { package = \"framealloc\" }\n"),
            None
        );
        assert_eq!(
            name("[features]\nfa = { package = \"framealloc\" }\n"),
            None
        );
        assert_eq!(
            name("[patch.crates-io]\nfa = { package = \"framealloc\" }\n"),
            None
        );
    }

    #[test]
    fn target_and_dev_tables() {
        let target = "[target.'cfg(target_arch = \"x86_64\")'.dependencies]\nfa = { package = \"framealloc\" }\n";
        assert_eq!(name(target).as_deref(), Some("fa"));
        let dotted = "[target.x86_64-unknown-none.dependencies.fa]\npackage = \"framealloc\"\n";
        assert_eq!(name(dotted).as_deref(), Some("fa"));
        assert_eq!(
            name("[dev-dependencies]\nfa = { package = \"framealloc\" }\n").as_deref(),
            Some("fa")
        );
        assert_eq!(
            name("[target.\"cfg(unix)\".dev-dependencies]\nfa.package = \"framealloc\"\n")
                .as_deref(),
            Some("fa")
        );
        // The ordinary dependencies decide over the dev-dependencies.
        let both = "[dependencies]\nframealloc = \"0.1\"\n[dev-dependencies]\nfa = { package = \"framealloc\" }\n";
        assert_eq!(name(both), None);
        let both = "[dependencies]\nfa = { package = \"framealloc\" }\n[dev-dependencies]\nframealloc = \"0.1\"\n";
        assert_eq!(name(both).as_deref(), Some("fa"));
        // Two different names where both apply: no guess.
        let two = "[dependencies]\nfa = { package = \"framealloc\" }\n[target.'cfg(unix)'.dependencies]\nfb = { package = \"framealloc\" }\n";
        assert_eq!(name(two), None);
    }

    #[test]
    fn workspace_inheritance() {
        let member = "[dependencies]\nfa = { workspace = true }\n";
        let root = || {
            Some("[workspace]\nmembers = [\"k\"]\n[workspace.dependencies]\nfa = { package = \"framealloc\", path = \"r\" }\n".to_owned())
        };
        assert_eq!(renamed_in(member, root).as_deref(), Some("fa"));
        assert_eq!(
            renamed_in("[dependencies]\nfa.workspace = true\n", root).as_deref(),
            Some("fa")
        );
        let plain = || Some("[workspace.dependencies]\nframealloc = { path = \"r\" }\n".to_owned());
        assert_eq!(
            renamed_in("[dependencies]\nframealloc = { workspace = true }\n", plain),
            None
        );
        // A root that cannot be found or read: the default.
        assert_eq!(renamed_in(member, no_workspace), None);
        // The root is read only when an entry inherits.
        let untouched = || -> Option<String> { panic!("read the workspace root for nothing") };
        assert_eq!(
            renamed_in(
                "[dependencies]\nfa = { package = \"framealloc\" }\n",
                untouched
            )
            .as_deref(),
            Some("fa")
        );
    }

    #[test]
    fn the_workspace_root_is_found_on_disk() {
        let base = std::env::temp_dir().join(format!("framealloc-manifest-{}", std::process::id()));
        let member = base.join("crates").join("k");
        let elsewhere = base.join("elsewhere");
        std::fs::create_dir_all(&member).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        let inherit = "[package]\nname = \"k\"\n[dependencies]\nfa = { workspace = true }\n";
        std::fs::write(member.join("Cargo.toml"), inherit).unwrap();
        // No workspace anywhere: the default.
        assert_eq!(super::renamed_in_dir(&member), None);
        // A directory between the member and the root without a manifest, and
        // a root whose `[workspace]` table is only dotted keys.
        let root = "workspace.members = [\"crates/k\"]\nworkspace.dependencies.fa = { package = \"framealloc\" }\n";
        std::fs::write(base.join("Cargo.toml"), root).unwrap();
        assert_eq!(super::renamed_in_dir(&member).as_deref(), Some("fa"));
        // `package.workspace` names the root explicitly.
        let named = "[workspace]\n[workspace.dependencies]\nfa = { package = \"framealloc\", path = \"r\" }\n";
        std::fs::write(elsewhere.join("Cargo.toml"), named).unwrap();
        std::fs::write(
            base.join("Cargo.toml"),
            "[workspace.dependencies]\nfa = \"1\"\n",
        )
        .unwrap();
        assert_eq!(super::renamed_in_dir(&member), None);
        let pointed = format!(
            "[package]\nworkspace = \"../../elsewhere\"\n{}",
            &inherit[10..]
        );
        std::fs::write(member.join("Cargo.toml"), pointed).unwrap();
        assert_eq!(super::renamed_in_dir(&member).as_deref(), Some("fa"));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn unreadable_or_unusable_gives_the_default() {
        for text in [
            "[dependencies\nfa = { package = \"framealloc\" }\n",
            "[dependencies]\nfa = { package = \"framealloc\"\n",
            "[dependencies]\nfa = { package = \"framealloc\" } junk\n",
            "[dependencies]\nfa = \"unterminated\n",
            "[dependencies]\nfa =\n",
            "[dependencies]\ntype = { package = \"framealloc\" }\n",
            "[dependencies]\n\"f a\" = { package = \"framealloc\" }\n",
        ] {
            assert_eq!(name(text), None, "{text}");
        }
        // Deep nesting and every prefix of a valid manifest: no panic.
        let deep = format!("x = {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(name(&deep), None);
        let full = "[dependencies]\nfa = { package = \"fr\\u0061mealloc\", path = '''x''' }\n[dev-dependencies.fb]\npackage = \"\"\"framealloc\"\"\"\n";
        for end in 0..=full.len() {
            if full.is_char_boundary(end) {
                let _ = name(&full[..end]);
            }
        }
    }
}
