//! A server configuration's KV text (spec §3.7) line by line, and how to leave out what a server refuses.
//!
//! `PUT /config` replaces the whole configuration and refuses it whole when one part does not validate.
//! MinIO and `RustFS` know different subsystems and keys (`RustFS` 1.0.1: `unsupported config subsystem
//! 'api'`, `unsupported config key 'bitrot' for subsystem 'heal'`), so a MinIO configuration restored onto
//! `RustFS` is sent again without the part the server named, until it is accepted
//! ([`crate::AdminClient::set_config_known`]).

use zeroize::Zeroize;

/// A part of a configuration the server refused, left out of what was set.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefusedConfig {
    /// The subsystem, e.g. `api`, or one target of it, e.g. `notify_webhook:audit1`.
    pub subsystem: String,
    /// The key, when only it was left out (the rest of the subsystem was kept).
    pub key: Option<String>,
    /// The server's reason, every `key=value` in it cut to `key=…` (a value may be a secret).
    pub reason: String,
}

impl std::fmt::Display for RefusedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{} key {key} ({})", self.subsystem, self.reason),
            None => write!(f, "{} ({})", self.subsystem, self.reason),
        }
    }
}

/// What [`crate::AdminClient::set_config_known`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigApplied {
    /// Whether a configuration was set (`false`: the server refused every subsystem, nothing was sent).
    pub applied: bool,
    /// What was left out because the server refused it, in the order it was refused.
    pub refused: Vec<RefusedConfig>,
}

/// One line of the text.
enum Line {
    /// A comment (`# MINIO_…=…`, a disabled subsystem) or an empty line: kept as it was.
    Other(String),
    /// `subsys[:target] key=value key="value with spaces" …`.
    Entry { subsystem: String, target: Option<String>, pairs: Vec<String> },
}

/// What to leave out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Culprit {
    Subsystem(String),
    Target(String, String),
    Key(String, String),
}

/// The text, parsed; secrets are zeroized on drop.
pub(crate) struct KvText {
    lines: Vec<Line>,
}

impl Drop for KvText {
    fn drop(&mut self) {
        for line in &mut self.lines {
            match line {
                Line::Other(text) => text.zeroize(),
                Line::Entry { pairs, .. } => pairs.iter_mut().for_each(Zeroize::zeroize),
            }
        }
    }
}

impl KvText {
    pub(crate) fn parse(text: &str) -> Self {
        let lines = text
            .lines()
            .map(|line| {
                let trimmed = line.trim();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    return Line::Other(line.to_owned());
                }
                let mut tokens = split_tokens(trimmed).into_iter();
                let head = tokens.next().unwrap_or_default();
                let (subsystem, target) = match head.split_once(':') {
                    Some((s, t)) => (s.to_owned(), Some(t.to_owned())),
                    None => (head, None),
                };
                Line::Entry { subsystem, target, pairs: tokens.collect() }
            })
            .collect();
        Self { lines }
    }

    /// The text to send.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Other(text) => out.push_str(text),
                Line::Entry { subsystem, target, pairs } => {
                    out.push_str(subsystem);
                    if let Some(target) = target {
                        out.push(':');
                        out.push_str(target);
                    }
                    for pair in pairs {
                        out.push(' ');
                        out.push_str(pair);
                    }
                }
            }
            out.push('\n');
        }
        out
    }

    /// Whether any subsystem is left to set.
    pub(crate) fn has_entries(&self) -> bool {
        self.lines.iter().any(|l| matches!(l, Line::Entry { .. }))
    }

    fn entries(&self) -> impl Iterator<Item = (&str, Option<&str>, &[String])> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry { subsystem, target, pairs } => {
                Some((subsystem.as_str(), target.as_deref(), pairs.as_slice()))
            }
            Line::Other(_) => None,
        })
    }

    /// What `message` (a server's refusal) names: a subsystem of this text quoted in it (`'api'`), else
    /// the one subsystem whose name appears in it as words (`invalid storage class config` names
    /// `storage_class`); then, of that subsystem, a quoted key or target, or the whole subsystem.
    pub(crate) fn culprit(&self, message: &str) -> Option<Culprit> {
        let quoted = quoted_words(message);
        let mut names: Vec<&str> = self.entries().map(|(s, _, _)| s).collect();
        names.sort_unstable();
        names.dedup();
        let subsystem = names.iter().copied().find(|n| quoted.iter().any(|q| q == n)).or_else(|| {
            let lower = message.to_ascii_lowercase();
            let mut named = names
                .iter()
                .copied()
                .filter(|n| contains_words(&lower, n) || contains_words(&lower, &n.replace('_', " ")));
            match (named.next(), named.next()) {
                (Some(one), None) => Some(one),
                _ => None,
            }
        })?;
        let of_it: Vec<_> = self.entries().filter(|(s, _, _)| *s == subsystem).collect();
        for q in &quoted {
            if of_it.iter().any(|(_, _, pairs)| pairs.iter().any(|p| key_of(p) == q)) {
                return Some(Culprit::Key(subsystem.to_owned(), q.clone()));
            }
            if of_it.iter().any(|(_, target, _)| *target == Some(q.as_str())) {
                return Some(Culprit::Target(subsystem.to_owned(), q.clone()));
            }
        }
        // `invalid scanner config value for cycle: 1m`: the one key of it the message names as a word.
        let lower = message.to_ascii_lowercase();
        let mut keys: Vec<&str> =
            of_it.iter().flat_map(|(_, _, pairs)| pairs.iter().map(|p| key_of(p))).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut named = keys.into_iter().filter(|k| k.len() > 2 && contains_words(&lower, k));
        if let (Some(key), None) = (named.next(), named.next()) {
            return Some(Culprit::Key(subsystem.to_owned(), key.to_owned()));
        }
        Some(Culprit::Subsystem(subsystem.to_owned()))
    }

    /// Leaves `culprit` out; what was left out, with `reason`.
    pub(crate) fn drop_culprit(&mut self, culprit: Culprit, reason: &str) -> RefusedConfig {
        let reason = without_values(reason);
        match culprit {
            Culprit::Subsystem(name) => {
                self.lines.retain(|l| !matches!(l, Line::Entry { subsystem, .. } if *subsystem == name));
                RefusedConfig { subsystem: name, key: None, reason }
            }
            Culprit::Target(name, target) => {
                self.lines.retain(|l| {
                    !matches!(l, Line::Entry { subsystem, target: Some(t), .. } if *subsystem == name && *t == target)
                });
                RefusedConfig { subsystem: format!("{name}:{target}"), key: None, reason }
            }
            Culprit::Key(name, key) => {
                for line in &mut self.lines {
                    if let Line::Entry { subsystem, pairs, .. } = line
                        && *subsystem == name
                    {
                        pairs.retain(|p| key_of(p) != key);
                    }
                }
                self.lines.retain(|l| !matches!(l, Line::Entry { pairs, .. } if pairs.is_empty()));
                RefusedConfig { subsystem: name, key: Some(key), reason }
            }
        }
    }
}

/// Splits on spaces outside double or single quotes (madmin's `KvDoubleQuote`, `KvSingleQuote`).
fn split_tokens(line: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (None, ' ' | '\t') => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), _) if c == q => {
                quote = None;
                current.push(c);
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

fn key_of(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(k, _)| k)
}

/// The words between single or double quotes.
fn quoted_words(message: &str) -> Vec<String> {
    let mut out = Vec::new();
    for quote in ['\'', '"'] {
        let parts: Vec<&str> = message.split(quote).collect();
        // Odd parts lie between an opening and a closing quote, when a closing one follows.
        out.extend((1..parts.len().saturating_sub(1)).step_by(2).map(|i| parts[i].to_owned()));
    }
    out
}

/// Whether `words` occurs in `text` with no letter, digit or `_` right before or after it.
fn contains_words(text: &str, words: &str) -> bool {
    let edge = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
    text.match_indices(words)
        .any(|(at, _)| edge(text[..at].chars().next_back()) && edge(text[at + words.len()..].chars().next()))
}

/// `key=value` → `key=…` in a server message: the value may be a secret.
fn without_values(message: &str) -> String {
    message
        .split(' ')
        .map(|word| match word.split_once('=') {
            Some((key, value)) if !value.is_empty() => {
                let kept = value.trim_end_matches([')', ']', ',', ';', '.']);
                format!("{key}=…{}", &value[kept.len()..])
            }
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIO: &str = "# MINIO_API_REQUESTS_MAX=1600\n\
api requests_max=0 cors_allow_origin=* remote_transport_deadline=2h\n\
heal bitrot=off sleep=250ms io_count=100 drive_workers= max_sleep=1s\n\
notify_webhook:audit1 endpoint=\"http://hook:8080/x y\" auth_token=s3cr3t queue_limit=0\n\
# identity_ldap server_addr= \n\
storage_class standard= rrs=EC:1\n";

    #[test]
    fn renders_what_it_parsed() {
        assert_eq!(KvText::parse(MINIO).render(), MINIO);
    }

    #[test]
    fn rustfs_refusals_name_a_subsystem_or_a_key() {
        let mut text = KvText::parse(MINIO);
        // RustFS 1.0.1's messages, as its XML error carries them.
        let c = text.culprit("unsupported config subsystem 'api'").unwrap();
        assert_eq!(c, Culprit::Subsystem("api".into()));
        let refused = text.drop_culprit(c, "unsupported config subsystem 'api'");
        assert_eq!(refused.to_string(), "api (unsupported config subsystem 'api')");
        let c = text.culprit("unsupported config key 'bitrot' for subsystem 'heal'").unwrap();
        assert_eq!(c, Culprit::Key("heal".into(), "bitrot".into()));
        text.drop_culprit(c, "x");
        let rendered = text.render();
        assert!(!rendered.contains("api ") && !rendered.contains("bitrot"), "{rendered}");
        assert!(
            rendered.contains("heal sleep=250ms io_count=100 drive_workers= max_sleep=1s\n"),
            "{rendered}"
        );
        assert!(rendered.contains("# MINIO_API_REQUESTS_MAX=1600\n"), "comments stay: {rendered}");
    }

    #[test]
    fn unquoted_names_and_targets() {
        let text = KvText::parse(MINIO);
        assert_eq!(
            text.culprit("invalid storage class config: parity 2 should be less than or equal to 0"),
            Some(Culprit::Subsystem("storage_class".into()))
        );
        assert_eq!(
            text.culprit("notify_webhook config for target 'audit1': endpoint URL is not allowed"),
            Some(Culprit::Target("notify_webhook".into(), "audit1".into()))
        );
        assert_eq!(text.culprit("something went wrong"), None);
        // RustFS 1.0.1 on MinIO's `scanner … cycle=1m`.
        let scanner = KvText::parse("scanner speed=default cycle=1m excess_versions=100\n");
        assert_eq!(
            scanner.culprit("invalid scanner config: invalid scanner config value for cycle: 1m (expected unsigned integer seconds or count)"),
            Some(Culprit::Key("scanner".into(), "cycle".into()))
        );
    }

    #[test]
    fn the_last_key_takes_its_line_and_values_never_show() {
        let mut text = KvText::parse("heal bitrot=off\nscanner speed=default\n");
        let refused = text
            .drop_culprit(Culprit::Key("heal".into(), "bitrot".into()), "found invalid keys (bitrot=off)");
        assert_eq!(refused.reason, "found invalid keys (bitrot=…)");
        assert_eq!(text.render(), "scanner speed=default\n");
        text.drop_culprit(Culprit::Subsystem("scanner".into()), "x");
        assert!(!text.has_entries());
    }

    #[test]
    fn quotes_keep_spaces_inside_values() {
        assert_eq!(split_tokens(r#"a:b k="x y" j='p q' z="#), ["a:b", r#"k="x y""#, "j='p q'", "z="]);
        assert_eq!(quoted_words("key 'a' for 'b'"), ["a", "b"]);
    }
}
