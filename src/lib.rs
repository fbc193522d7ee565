//! mediagate: the application server between apps, an object store and a media-processing
//! service. Apps get upload credentials scoped to their own prefix; uploads trigger media
//! workflows.

/// The application state, how it is built and served.
pub mod app;
/// Who is calling: app-user JWTs and API keys.
pub mod auth;
/// The command line.
pub mod cli;
/// Where the app reads the time: the system clock, or one tests move.
pub mod clock;
/// Typed, layered configuration and its validation.
pub mod config;
/// What a caller may upload: keys, session policies, and the credential cache.
pub mod credentials;
/// The HTTP edge: routes, extractors, errors.
pub mod http;
pub mod json;
/// What the store persists as fixed text: modes, states, sinks, sources, reasons.
pub mod kinds;
/// Media attributes and their limits.
pub mod media;
/// Upload notifications and the callback parameters clients attach.
pub mod notifications;
/// The durable trigger queue, its worker and the sinks (MPS, webhooks).
pub mod processing;
/// Permission control: plans, quotas counted from the uploads, suspension.
pub mod quotas;
/// Serving the app on a listener until a shutdown signal.
pub mod server;
/// Signature maths (pure).
pub mod signing;
/// The input bucket: provider, endpoint and addressing, bucket-name rules.
pub mod storage;
/// Database access and migrations.
pub mod store;
/// Security Token Service clients.
pub mod sts;
/// Logging setup.
pub mod telemetry;
/// The upload, mediagate's central object: its type, its rules and its use cases.
pub mod uploads;
/// Shared habits of talking to outside HTTP services.
pub mod upstream;
/// Media workflows and the media-file rule.
pub mod workflows;

/// The module map's one rule: dependencies point one way, between top-level modules and
/// between the files of each, and only the HTTP edge builds on axum. Read from the sources, so
/// a forbidden path fails the build's tests the day it is written.
#[cfg(test)]
mod architecture {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The edge and the wiring: only they may know the configuration and the HTTP layer.
    const OUTER: &[&str] = &["app", "cli", "config", "http", "server"];
    /// What the store may use besides crates: the types it persists.
    const STORE_MAY_USE: &[&str] = &["kinds", "media", "workflows"];

    /// Every top-level module and the top-level modules its code names as `crate::x`
    /// (comments aside).
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph = BTreeMap::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if name == "lib" || name == "main" {
                continue;
            }
            let mut uses = BTreeSet::new();
            for file in rust_files(&path) {
                let text = std::fs::read_to_string(&file).unwrap();
                for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for (at, _) in line.match_indices("crate::") {
                        let module: String = line[at + "crate::".len()..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !module.is_empty() && module != name {
                            uses.insert(module);
                        }
                    }
                }
            }
            // `app.rs` and its submodules in `app/` are one module.
            graph.entry(name).or_insert_with(BTreeSet::new).extend(uses);
        }
        graph
    }

    fn rust_files(path: &Path) -> Vec<std::path::PathBuf> {
        if path.is_dir() {
            std::fs::read_dir(path)
                .unwrap()
                .flat_map(|e| rust_files(&e.unwrap().path()))
                .collect()
        } else if path.extension().is_some_and(|e| e == "rs") {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        }
    }

    #[test]
    fn domains_never_import_the_edge_and_the_store_no_service() {
        let graph = graph();
        assert!(graph.contains_key("workflows") && graph.contains_key("http"));
        let mut forbidden = Vec::new();
        for (module, uses) in &graph {
            for used in uses {
                let refused = if OUTER.contains(&module.as_str()) {
                    false
                } else if module == "store" {
                    !STORE_MAY_USE.contains(&used.as_str())
                } else {
                    OUTER.contains(&used.as_str())
                };
                if refused {
                    forbidden.push(format!("{module} -> {used}"));
                }
            }
        }
        assert!(
            forbidden.is_empty(),
            "forbidden dependencies: {forbidden:?}"
        );
    }

    #[test]
    fn no_cycle_among_top_level_modules() {
        let graph = graph();
        // Depth-first search for a back edge, reporting the cycle it closes.
        fn visit<'a>(
            node: &'a str,
            graph: &'a BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|n| *n == node) {
                let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            if !done.insert(node) {
                return None;
            }
            path.push(node);
            for next in graph.get(node).into_iter().flatten() {
                if let Some(cycle) = visit(next, graph, path, done) {
                    return Some(cycle);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            let cycle = visit(node, &graph, &mut Vec::new(), &mut done);
            assert!(
                cycle.is_none(),
                "import cycle: {}",
                cycle.unwrap().join(" -> ")
            );
        }
    }

    /// The crate's own files that may name axum: the HTTP edge, serving it, and the crate root.
    const AXUM_MAY_BE_USED_IN: &[&str] = &["http", "server", "lib", "main"];

    #[test]
    fn only_the_http_edge_uses_axum() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if AXUM_MAY_BE_USED_IN.contains(&name.as_str()) {
                continue;
            }
            for file in rust_files(&path) {
                let text = std::fs::read_to_string(&file).unwrap();
                // Test modules count too: a loopback stand-in is written with hyper instead.
                // Comments and string literals do not.
                for (code, line) in code_of(&text).lines().zip(text.lines()) {
                    let names_axum = code
                        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .any(|w| w == "axum" || w.starts_with("axum_") || w.ends_with("_axum"));
                    if names_axum {
                        let at = file.strip_prefix(&src).unwrap().display();
                        found.push(format!("src/{at}: {}", line.trim()));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "axum (or an axum_* or *_axum crate) outside {AXUM_MAY_BE_USED_IN:?}:\n{}",
            found.join("\n")
        );
    }

    /// File cycles inside a module that predate the check, as the files of each strongly
    /// connected set. The check fails when the sets found differ from these: a new cycle, or a
    /// file drawn into a listed one, fails, and so does a listed set once it is untangled, so
    /// the list only shrinks.
    const KNOWN_FILE_CYCLES: &[(&str, &[&str])] = &[
        // mod.rs calls Jwks::new and VerifiedTokens; jwks.rs returns mod.rs's AuthError and
        // verified.rs caches mod.rs's Principal.
        ("auth", &["jwks", "mod", "verified"]),
        // mod.rs holds a CredentialCache, which is keyed by mod.rs's Scope.
        ("credentials", &["cache", "mod"]),
        // mod.rs builds the routes with cors.rs's layer and ops.rs's handlers; cors.rs exposes
        // mod.rs's REQUEST_ID and ops.rs serves mod.rs's ServedDocument.
        ("http", &["cors", "mod", "ops"]),
        // openapi.rs wraps the view types of admin.rs and uploads.rs in its list types, which
        // those handlers return.
        ("http", &["admin", "openapi", "uploads"]),
        // mod.rs checks signatures with keys.rs, mns.rs and oss.rs; mns.rs and oss.rs use
        // mod.rs's NotificationError and overrides (mns.rs its Parsed too), keys.rs its
        // NotificationsConfig.
        ("notifications", &["keys", "mns", "mod", "oss"]),
        // mod.rs batches the writes of events.rs, outcomes.rs and triggers.rs through
        // batch.rs and caches workflows.rs's WorkflowCache; all are written against mod.rs's
        // Store and Backend, and audit.rs (which outcomes.rs and workflows.rs record with)
        // against its Store; outcomes.rs opens runs.rs's runs when a delivery is recorded,
        // and runs.rs applies outcomes.rs's upload-state rule.
        (
            "store",
            &[
                "audit",
                "batch",
                "events",
                "mod",
                "outcomes",
                "runs",
                "triggers",
                "workflows",
            ],
        ),
    ];

    #[test]
    fn no_cycle_among_the_files_of_a_module() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let dir = entry.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            let module = dir.file_name().unwrap().to_string_lossy().into_owned();
            let mut files = BTreeMap::new();
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "rs") {
                    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                    files.insert(stem, std::fs::read_to_string(&path).unwrap());
                }
            }
            let graph = file_graph(&module, &files);
            for cycle in cycles(&graph) {
                let edges: Vec<String> = graph
                    .iter()
                    .filter(|((from, to), _)| cycle.contains(from) && cycle.contains(to))
                    .map(|((from, to), items)| {
                        let items: Vec<&str> = items.iter().map(String::as_str).collect();
                        format!("  {from}.rs -> {to}.rs: {}", items.join(", "))
                    })
                    .collect();
                found.insert((module.clone(), cycle), edges.join("\n"));
            }
        }
        let known: BTreeSet<(String, BTreeSet<String>)> = KNOWN_FILE_CYCLES
            .iter()
            .map(|(m, files)| (m.to_string(), files.iter().map(|f| f.to_string()).collect()))
            .collect();
        let mut problems = Vec::new();
        for ((module, cycle), edges) in &found {
            if !known.contains(&(module.clone(), cycle.clone())) {
                problems.push(format!(
                    "files of src/{module}/ that refer to each other in a cycle {cycle:?}:\n{edges}"
                ));
            }
        }
        for (module, cycle) in &known {
            if !found.contains_key(&(module.clone(), cycle.clone())) {
                problems.push(format!(
                    "src/{module}/ {cycle:?} is no longer a cycle: update KNOWN_FILE_CYCLES"
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn file_references_follow_re_exports_and_inline_modules() {
        let files: BTreeMap<String, String> = [
            (
                "mod",
                "mod a;\nmod b;\nmod c;\npub use a::Alpha;\npub use b::{Beta, Gamma as G};\n\
                 pub struct Root;\nfn g() -> G { c::run(); G }\n",
            ),
            (
                "a",
                "use super::Beta; // b's, through the re-export\npub struct Alpha;\n\
                 #[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::Root;\n}\n",
            ),
            (
                "b",
                "pub struct Beta;\npub struct Gamma;\nconst S: &str = \"super::c::run {\";\n",
            ),
            ("c", "use crate::m::{Root, a::Alpha};\npub fn run() {}\n"),
        ]
        .into_iter()
        .map(|(file, text)| (file.to_owned(), text.to_owned()))
        .collect();
        let graph = file_graph("m", &files);
        let edges: BTreeSet<(&str, &str)> = graph
            .keys()
            .map(|(from, to)| (from.as_str(), to.as_str()))
            .collect();
        // The root names c's `run` and b's `Gamma` (as `G`) in code of its own, but not
        // `Alpha`; a's test module names the root's `Root`.
        let expected = [
            ("a", "b"),
            ("a", "mod"),
            ("c", "a"),
            ("c", "mod"),
            ("mod", "b"),
            ("mod", "c"),
        ];
        assert_eq!(edges, BTreeSet::from(expected));
        // mod -> c -> a -> mod; b, referred to only, is outside it.
        let cycle = BTreeSet::from(["a", "c", "mod"].map(String::from));
        assert_eq!(cycles(&graph), BTreeSet::from([cycle]));
    }

    /// The references between the files of one module directory (`mod` is `mod.rs`, the
    /// module root), each with the items named through it.
    ///
    /// A file refers to a sibling by `super::sibling`, `crate::module::sibling` or, from
    /// `mod.rs`, `sibling::` or `self::sibling`; to the root by naming one of its items the
    /// same ways. Test modules count; `super` inside an inline module is followed up to the
    /// file it names. `mod x;` declarations are not references.
    ///
    /// A `pub use child::Item` in `mod.rs` is the module's public face, not code of its own:
    /// it adds no reference from the root, and a sibling naming `super::Item` refers to
    /// `child`, the file that defines it. The root refers to `child` only when its own code
    /// names a re-exported item too.
    fn file_graph(
        module: &str,
        files: &BTreeMap<String, String>,
    ) -> BTreeMap<(String, String), BTreeSet<String>> {
        let children: BTreeSet<&str> = files.keys().map(String::as_str).collect();
        let mut graph: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        let mut reexported = BTreeMap::new();
        let mut named_by_root = BTreeSet::new();
        let mut references = Vec::new();
        for (file, text) in files {
            let is_root = file == "mod";
            let tokens = tokens(&code_of(text));
            let mut depth = 0usize;
            let mut inline_modules = Vec::new();
            let mut in_pub_use = false;
            let mut i = 0;
            while i < tokens.len() {
                let (token, next) = (&tokens[i], tokens.get(i + 1));
                let previous = i.checked_sub(1).map(|p| &tokens[p]);
                match token {
                    Token::Punct('{') => depth += 1,
                    Token::Punct('}') => {
                        if inline_modules.last() == Some(&depth) {
                            inline_modules.pop();
                        }
                        depth = depth.saturating_sub(1);
                    }
                    Token::Punct(';') => in_pub_use = false,
                    Token::Ident(w)
                        if w == "mod" && tokens.get(i + 2) == Some(&Token::Punct('{')) =>
                    {
                        depth += 1;
                        inline_modules.push(depth);
                        i += 3;
                        continue;
                    }
                    Token::Ident(w) if w == "use" && previous.is_some_and(is_visibility_end) => {
                        in_pub_use = is_root;
                    }
                    Token::Ident(w) => {
                        if is_root && !in_pub_use {
                            named_by_root.insert(w.clone());
                        }
                        if next == Some(&Token::Path) && previous != Some(&Token::Path) {
                            let (paths, end) = use_tree(&tokens, i);
                            for (segments, name) in paths {
                                let Some(from_root) = from_root(
                                    module,
                                    file,
                                    &segments,
                                    inline_modules.len(),
                                    &children,
                                ) else {
                                    continue;
                                };
                                if in_pub_use && children.contains(from_root[0].as_str()) {
                                    // A glob or `self` re-export names no one item.
                                    if name != "*" && name != "self" {
                                        reexported.insert(name, from_root[0].clone());
                                    }
                                } else {
                                    references.push((file.clone(), from_root.join("::")));
                                }
                            }
                            i = end;
                            continue;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        for (name, child) in &reexported {
            if named_by_root.contains(name) {
                references.push(("mod".to_owned(), format!("{child}::{name}")));
            }
        }
        for (file, path) in references {
            let first = path.split("::").next().unwrap_or_default();
            let to = if children.contains(first) && first != "mod" {
                first.to_owned()
            } else if let Some(child) = reexported.get(first) {
                child.clone()
            } else {
                "mod".to_owned()
            };
            if to != file {
                graph.entry((file, to)).or_default().insert(path);
            }
        }
        graph
    }

    /// `path` (a `use` tree's flattened path, inside `inline` inline modules of `file`) as a
    /// path from the module root, when it names something in the module outside `file`.
    fn from_root(
        module: &str,
        file: &str,
        path: &[String],
        inline: usize,
        children: &BTreeSet<&str>,
    ) -> Option<Vec<String>> {
        let is_root = file == "mod";
        let rest = match path[0].as_str() {
            "super" => {
                let ups = path.iter().take_while(|s| *s == "super").count();
                // The file itself is at level 0 and the root at level -1 (or 0 from mod.rs).
                let level = inline as isize - ups as isize;
                let root_level = if is_root { 0 } else { -1 };
                (level == root_level).then(|| &path[ups..])?
            }
            "self" => (is_root && inline == 0).then(|| &path[1..])?,
            "crate" => (path.get(1).map(String::as_str) == Some(module)).then(|| &path[2..])?,
            first => (is_root && children.contains(first)).then_some(path)?,
        };
        (!rest.is_empty()).then(|| rest.to_vec())
    }

    /// Whether `token` can end a visibility (`pub`, `pub(crate)`), so that a `use` after it is
    /// a re-export.
    fn is_visibility_end(token: &Token) -> bool {
        matches!(token, Token::Ident(w) if w == "pub") || *token == Token::Punct(')')
    }

    /// The flattened paths of the `use` tree or path starting at `tokens[i]`, each with the
    /// name it brings in, and the index after it. `a::{b::C, D as E}` is `a::b::C` (`C`) and
    /// `a::D` (`E`); a path ends before a turbofish.
    fn use_tree(tokens: &[Token], mut i: usize) -> (Vec<(Vec<String>, String)>, usize) {
        let mut prefix = Vec::new();
        loop {
            match tokens.get(i) {
                Some(Token::Ident(segment)) => {
                    prefix.push(segment.clone());
                    i += 1;
                    if tokens.get(i) == Some(&Token::Path) {
                        i += 1;
                        continue;
                    }
                    let mut name = segment.clone();
                    if let (Some(Token::Ident(r#as)), Some(Token::Ident(alias))) =
                        (tokens.get(i), tokens.get(i + 1))
                        && r#as == "as"
                    {
                        name = alias.clone();
                        i += 2;
                    }
                    return (vec![(prefix, name)], i);
                }
                Some(Token::Punct('*')) => {
                    prefix.push("*".to_owned());
                    return (vec![(prefix, "*".to_owned())], i + 1);
                }
                Some(Token::Punct('{')) => {
                    let mut paths = Vec::new();
                    i += 1;
                    while let Some(token) = tokens.get(i) {
                        match token {
                            Token::Punct('}') => return (paths, i + 1),
                            Token::Punct(',') => i += 1,
                            _ => {
                                let (inner, end) = use_tree(tokens, i);
                                paths.extend(
                                    inner.into_iter().map(|(path, name)| {
                                        ([prefix.clone(), path].concat(), name)
                                    }),
                                );
                                i = end.max(i + 1);
                            }
                        }
                    }
                    return (paths, i);
                }
                _ => {
                    let Some(name) = prefix.last().cloned() else {
                        return (Vec::new(), i);
                    };
                    return (vec![(prefix, name)], i);
                }
            }
        }
    }

    /// The strongly connected sets of two or more files in `graph`.
    fn cycles(graph: &BTreeMap<(String, String), BTreeSet<String>>) -> BTreeSet<BTreeSet<String>> {
        let reach = |from: &String| {
            let mut seen = BTreeSet::from([from.clone()]);
            let mut todo = vec![from.clone()];
            while let Some(node) = todo.pop() {
                for (_, to) in graph.keys().filter(|(f, _)| *f == node) {
                    if seen.insert(to.clone()) {
                        todo.push(to.clone());
                    }
                }
            }
            seen
        };
        let nodes: BTreeSet<&String> = graph.keys().flat_map(|(f, t)| [f, t]).collect();
        let reached: BTreeMap<&String, BTreeSet<String>> =
            nodes.iter().map(|n| (*n, reach(n))).collect();
        nodes
            .iter()
            .map(|a| {
                reached[a]
                    .iter()
                    .filter(|b| reached[b].contains(*a))
                    .cloned()
                    .collect::<BTreeSet<String>>()
            })
            .filter(|set| set.len() > 1)
            .collect()
    }

    #[derive(Debug, PartialEq)]
    enum Token {
        Ident(String),
        /// `::`
        Path,
        /// Any other character; a number or a lifetime's quote is one of these too.
        Punct(char),
    }

    /// The tokens of `code` (see [`code_of`]): enough of Rust's to follow paths and braces.
    fn tokens(code: &str) -> Vec<Token> {
        let chars: Vec<char> = code.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_alphanumeric() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                if c.is_ascii_digit() {
                    tokens.push(Token::Punct('0'));
                } else {
                    tokens.push(Token::Ident(chars[start..i].iter().collect()));
                }
                continue;
            }
            if c == ':' && chars.get(i + 1) == Some(&':') {
                tokens.push(Token::Path);
                i += 2;
                continue;
            }
            if !c.is_whitespace() {
                tokens.push(Token::Punct(c));
            }
            i += 1;
        }
        tokens
    }

    /// `text` with comments, string literals and character literals blanked (a string becomes
    /// `""`), keeping every line break, so that what is left is code on its original lines.
    fn code_of(text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
        let word = |c: char| c.is_alphanumeric() || c == '_';
        // The number of hashes of the raw string that starts at `i`, if one does.
        let raw_string_at = |i: usize| {
            let prefix = match i.checked_sub(1).map(|p| chars[p]) {
                Some('b' | 'c') => i.checked_sub(2).map(|p| chars[p]),
                before => before,
            };
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            (chars[i] == 'r' && !prefix.is_some_and(word) && at(i + 1 + hashes) == '"')
                .then_some(hashes)
        };
        let mut out = String::with_capacity(text.len());
        // Blanks chars[from..to], keeping line breaks.
        let blank = |out: &mut String, from: usize, to: usize| {
            out.extend(
                chars[from..to.min(chars.len())]
                    .iter()
                    .filter(|c| **c == '\n'),
            );
        };
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '/' && at(i + 1) == '/' {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            } else if c == '/' && at(i + 1) == '*' {
                let (start, mut nesting) = (i, 0);
                while i < chars.len() {
                    if chars[i] == '/' && at(i + 1) == '*' {
                        nesting += 1;
                        i += 2;
                    } else if chars[i] == '*' && at(i + 1) == '/' {
                        nesting -= 1;
                        i += 2;
                        if nesting == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
                blank(&mut out, start, i);
            } else if let Some(hashes) = raw_string_at(i) {
                // r"…", r#"…"#, br"…": no escapes; it ends at a quote and as many hashes.
                let start = i;
                i += hashes + 2;
                while i < chars.len()
                    && !(chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#'))
                {
                    i += 1;
                }
                i += 1 + hashes;
                out.push_str("\"\"");
                blank(&mut out, start, i);
            } else if c == '"' {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
                blank(&mut out, start, i);
            } else if c == '\'' && at(i + 1) == '\\' {
                // '\n', '\'', '\u{…}'
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if c == '\'' && at(i + 2) == '\'' {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        }
        out
    }
}

/// Every request allocates dozens of small, short-lived buffers on one thread and often frees
/// them on another; mimalloc's per-thread pages serve that pattern with far less work than the
/// system allocator's shared arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
