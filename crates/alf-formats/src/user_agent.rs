//! uap-core user-agent rules, compiled one rule at a time when a user agent needs it.
//!
//! Why not `ua_parser::Extractor`? It compiles all ~1,200 regexes up front: ~0.12 CPU-s
//! and ~60 MB of peak RSS before the first record, which every `parse` of a tiny file
//! and every daemon start paid. Here start-up only reads the rules and builds an
//! Aho-Corasick prefilter from literal "atoms" (strings one of which any match must
//! contain); a rule's regex is compiled the first time a user agent contains one of its
//! atoms. The rules, their order ("first match wins"), the regex rewriting and the
//! replacement semantics are ua-parser's (0.2), so the results are the same
//! (`results_match_ua_parser` checks it).
//!
//! Atoms are matched ASCII case-insensitively, which is sound only for ASCII input
//! (Unicode case folding maps `ſ` to `s` and the Kelvin sign to `k`): a non-ASCII user
//! agent is tried against every rule, in order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use regex::{Captures, Regex};
use regex_syntax::hir::{Class, Hir, HirKind};

/// The uap-core data set (ua-parser/uap-core `regexes.yaml`, converted to JSON so that
/// no YAML parser is needed). Apache-2.0; see `data/uap-LICENSE`.
static UAP_REGEXES: &str = include_str!("../data/uap-regexes.json");

/// Each rule's atoms (see [`rule_atoms`]), computed from the rules above by
/// [`computed_atoms`]: parsing 1,175 patterns at every start-up cost more than a third
/// of it. `tests::stored_atoms_are_current` fails when the file no longer matches the
/// rules (`ALF_WRITE_UA_ATOMS=1` rewrites it); a stale file is ignored at run time.
static UAP_ATOMS: &str = include_str!("../data/uap-atoms.json");

/// The shape of `data/uap-atoms.json`: per list, per rule, its atoms or `null`.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct StoredAtoms {
    user_agent_parsers: Vec<Option<Vec<String>>>,
    os_parsers: Vec<Option<Vec<String>>>,
    device_parsers: Vec<Option<Vec<String>>>,
}

/// Atoms of every rule, computed from the patterns (what the stored file holds).
#[cfg(test)]
fn computed_atoms() -> Option<StoredAtoms> {
    let regexes: ua_parser::Regexes<'_> = serde_json::from_str(UAP_REGEXES).ok()?;
    let text = |p: &str, ci: bool| {
        pattern_atoms(&rewrite_regex(p), ci).map(|atoms| {
            atoms
                .into_iter()
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .collect()
        })
    };
    Some(StoredAtoms {
        user_agent_parsers: regexes
            .user_agent_parsers
            .iter()
            .map(|p| text(&p.regex, false))
            .collect(),
        os_parsers: regexes
            .os_parsers
            .iter()
            .map(|p| text(&p.regex, false))
            .collect(),
        device_parsers: regexes
            .device_parsers
            .iter()
            .map(|p| {
                text(
                    &p.regex,
                    p.regex_flag == Some(ua_parser::device::Flag::IgnoreCase),
                )
            })
            .collect(),
    })
}

/// Atoms of one (rewritten) pattern.
fn pattern_atoms(pattern: &str, case_insensitive: bool) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(case_insensitive)
        .build()
        .parse(pattern)
        .ok()?;
    rule_atoms(&hir)
}

/// Shortest atom worth a prefilter entry: a one-byte atom (`;`, `/`) is in nearly
/// every user agent and would only make the rule compile sooner.
const MIN_ATOM_LEN: usize = 2;

/// What one rule contributes to the result; `None` fields fall back as in ua-parser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub family: String,
    pub major: Option<String>,
    pub minor: Option<String>,
    pub patch: Option<String>,
}

/// The agent, OS and device found in one user agent (`None`: no rule matched).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    pub agent: Option<Parsed>,
    pub os: Option<Parsed>,
    pub device: Option<String>,
}

/// How one output field is resolved from a rule's replacement and its capture groups.
#[derive(Debug)]
enum Resolve {
    /// Nothing (ua-parser's `None`).
    Absent,
    /// The text as written.
    Fixed(Box<str>),
    /// A capture group; an empty group is absent.
    Group(usize),
    /// `$N` references expanded with `Captures::expand`, then trimmed; empty is absent.
    Template(Box<str>),
    /// The agent family's own template: only `$1`, replaced literally, not trimmed.
    FamilyTemplate(Box<str>),
}

/// The captures of a rule's match, from either of its compiled forms.
enum Caps<'h> {
    Text(Captures<'h>),
    Ascii(regex::bytes::Captures<'h>),
}

impl<'h> Caps<'h> {
    /// Group `i`, absent when it did not take part or is empty.
    fn group(&self, i: usize) -> Option<&'h str> {
        let text = match self {
            Caps::Text(c) => c.get(i).map(|m| m.as_str()),
            // The haystack of the ASCII form is ASCII: every group is valid UTF-8.
            Caps::Ascii(c) => c
                .get(i)
                .and_then(|m| std::str::from_utf8(m.as_bytes()).ok()),
        };
        text.filter(|s| !s.is_empty())
    }

    /// `Captures::expand` of the template (`$1` and so on).
    fn expand(&self, template: &str, out: &mut String) {
        match self {
            Caps::Text(c) => c.expand(template, out),
            Caps::Ascii(c) => {
                let mut bytes = Vec::new();
                c.expand(template.as_bytes(), &mut bytes);
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
}

impl Resolve {
    fn resolve(&self, c: &Caps<'_>) -> Option<String> {
        match self {
            Resolve::Absent => None,
            Resolve::Fixed(s) => Some(s.to_string()),
            Resolve::Group(i) => c.group(*i).map(str::to_owned),
            Resolve::Template(t) => {
                let mut out = String::new();
                c.expand(t, &mut out);
                let trimmed = out.trim();
                (!trimmed.is_empty()).then(|| trimmed.to_owned())
            }
            Resolve::FamilyTemplate(t) => Some(t.replace("$1", c.group(1).unwrap_or(""))),
        }
    }
}

fn has_substitution(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
}

/// ua-parser's `Resolver`/`OptResolver`: a non-blank replacement (templated when it
/// holds `$N`), else group `idx` when the regex has it, else `missing`.
fn templated(repl: Option<&str>, groups: usize, idx: usize, missing: Resolve) -> Resolve {
    match repl.filter(|s| !s.trim().is_empty()) {
        Some(s) if has_substitution(s) => Resolve::Template(s.into()),
        Some(s) => Resolve::Fixed(s.into()),
        None if groups >= idx => Resolve::Group(idx),
        None => missing,
    }
}

/// ua-parser's `FallbackResolver` (agent versions): a non-empty replacement as is, else
/// group `idx` when present.
fn fallback(repl: Option<&str>, groups: usize, idx: usize) -> Resolve {
    match repl.filter(|s| !s.is_empty()) {
        Some(s) => Resolve::Fixed(s.into()),
        None if groups >= idx => Resolve::Group(idx),
        None => Resolve::Absent,
    }
}

/// ua-parser's `FamilyResolver`.
fn family(repl: Option<&str>, groups: usize) -> Resolve {
    match repl {
        Some(s) if s.contains("$1") && groups >= 1 => Resolve::FamilyTemplate(s.into()),
        Some(s) if !s.is_empty() && !s.contains("$1") => Resolve::Fixed(s.into()),
        _ if groups >= 1 => Resolve::Group(1),
        _ => Resolve::Fixed("".into()),
    }
}

/// A rule as read: pattern, case-insensitive, replacements.
type RuleSpec<'a> = (&'a str, bool, [Option<Box<str>>; 4]);

/// Which list a rule belongs to: it decides how the replacements resolve.
#[derive(Debug, Clone, Copy)]
enum RuleKind {
    Agent,
    Os,
    Device,
}

/// One rule: its (rewritten) pattern and replacements; the regex and the resolvers
/// (which depend on its capture-group count) are made on first use.
#[derive(Debug)]
struct Rule {
    kind: RuleKind,
    pattern: String,
    case_insensitive: bool,
    /// Family (or OS, or device) and major, minor, patch replacements as written.
    replacements: [Option<Box<str>>; 4],
    /// See [`rule_atoms`].
    atoms: Option<Vec<Vec<u8>>>,
    compiled: OnceLock<Option<(Regex, [Resolve; 4])>>,
    /// The same rule compiled for ASCII agents only; `None` when the pattern needs
    /// Unicode (then [`Rule::compiled`] serves every agent).
    ascii: OnceLock<Option<(regex::bytes::Regex, [Resolve; 4])>>,
}

impl Rule {
    /// The rule for any agent (Unicode classes, `&str` haystack).
    fn compiled(&self) -> Option<&(Regex, [Resolve; 4])> {
        self.compiled
            .get_or_init(|| {
                let regex = regex::RegexBuilder::new(&self.pattern)
                    .case_insensitive(self.case_insensitive)
                    .build()
                    .ok()?;
                let fields = self.fields(regex.captures_len());
                Some((regex, fields))
            })
            .as_ref()
    }

    /// The rule for an ASCII agent, compiled without Unicode: on an ASCII haystack
    /// `\d`, `\w`, `\s`, `\b`, `.`, negated classes and case folding match exactly
    /// what their Unicode forms match, but the automaton is a small fraction of the
    /// size (a Unicode `\w` alone is hundreds of ranges). Compiling the candidate rules
    /// of the first agent was most of `parse`'s start-up (callgrind: 176 M of 230 M
    /// instructions).
    fn ascii(&self) -> Option<&(regex::bytes::Regex, [Resolve; 4])> {
        self.ascii
            .get_or_init(|| {
                let regex = regex::bytes::RegexBuilder::new(&self.pattern)
                    .case_insensitive(self.case_insensitive)
                    .unicode(false)
                    .build()
                    .ok()?;
                let fields = self.fields(regex.captures_len());
                Some((regex, fields))
            })
            .as_ref()
    }

    /// How the rule's replacements resolve, given its capture group count (the
    /// implicit whole-match group included).
    fn fields(&self, captures_len: usize) -> [Resolve; 4] {
        // Groups, not counting the implicit whole-match group, as ua-parser.
        let g = captures_len.saturating_sub(1);
        let [name, v1, v2, v3] = self.replacements.each_ref().map(|r| r.as_deref());
        match self.kind {
            RuleKind::Agent => [
                family(name, g),
                fallback(v1, g, 2),
                fallback(v2, g, 3),
                fallback(v3, g, 4),
            ],
            RuleKind::Os => [
                templated(name, g, 1, Resolve::Fixed("".into())),
                templated(v1, g, 2, Resolve::Absent),
                templated(v2, g, 3, Resolve::Absent),
                templated(v3, g, 4, Resolve::Absent),
            ],
            RuleKind::Device => [
                templated(name, g, 1, Resolve::Fixed("".into())),
                Resolve::Absent,
                Resolve::Absent,
                Resolve::Absent,
            ],
        }
    }

    /// This rule's match on `ua`, through the ASCII form when `ua` is ASCII and the
    /// pattern allows it.
    fn matches<'r, 'h>(&'r self, ua: &'h str) -> Option<(&'r [Resolve; 4], Caps<'h>)> {
        if ua.is_ascii()
            && let Some((re, fields)) = self.ascii()
        {
            if !re.is_match(ua.as_bytes()) {
                return None;
            }
            return re.captures(ua.as_bytes()).map(|c| (fields, Caps::Ascii(c)));
        }
        let (re, fields) = self.compiled()?;
        if !re.is_match(ua) {
            return None;
        }
        re.captures(ua).map(|c| (fields, Caps::Text(c)))
    }
}

/// One ordered rule list with its prefilter.
#[derive(Debug)]
struct RuleSet {
    rules: Vec<Rule>,
    /// Atoms, lower case, matched ASCII case-insensitively.
    prefilter: Option<AhoCorasick>,
    /// For each atom, the rules it admits.
    atom_rules: Vec<Vec<u32>>,
    /// Rules without atoms: always tried.
    unfiltered: Vec<u32>,
}

impl RuleSet {
    fn new(mut rules: Vec<Rule>) -> Self {
        let mut atom_ids: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut atom_rules: Vec<Vec<u32>> = Vec::new();
        let mut unfiltered = Vec::new();
        for (i, rule) in rules.iter_mut().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            match rule.atoms.take() {
                Some(atoms) => {
                    for atom in atoms {
                        let next = atom_rules.len();
                        let id = *atom_ids.entry(atom).or_insert(next);
                        if id == next {
                            atom_rules.push(Vec::new());
                        }
                        atom_rules[id].push(i);
                    }
                }
                None => unfiltered.push(i),
            }
        }
        let mut atoms: Vec<(Vec<u8>, usize)> = atom_ids.into_iter().collect();
        atoms.sort_by_key(|(_, id)| *id);
        let prefilter = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(atoms.iter().map(|(a, _)| a))
            .ok();
        RuleSet {
            rules,
            prefilter,
            atom_rules,
            unfiltered,
        }
    }

    /// The first rule (in order) whose regex matches, with its captures.
    fn first_match<'h>(&self, ua: &'h str) -> Option<(&[Resolve; 4], Caps<'h>)> {
        let candidates: Vec<u32> = match &self.prefilter {
            Some(prefilter) if ua.is_ascii() => {
                let mut c = self.unfiltered.clone();
                for m in prefilter.find_overlapping_iter(ua) {
                    if let Some(rules) = self.atom_rules.get(m.pattern().as_usize()) {
                        c.extend_from_slice(rules);
                    }
                }
                c.sort_unstable();
                c.dedup();
                c
            }
            _ => (0..self.rules.len())
                .filter_map(|i| u32::try_from(i).ok())
                .collect(),
        };
        candidates
            .into_iter()
            .find_map(|i| self.rules.get(i as usize)?.matches(ua))
    }
}

/// The three rule lists, built once per process (cheap: no regex is compiled here).
#[derive(Debug)]
pub struct UserAgentRules {
    agents: RuleSet,
    os: RuleSet,
    devices: RuleSet,
}

impl UserAgentRules {
    /// The process-wide rules; `None` only if the embedded data did not load.
    pub fn get() -> Option<&'static UserAgentRules> {
        static RULES: OnceLock<Option<UserAgentRules>> = OnceLock::new();
        RULES.get_or_init(UserAgentRules::load).as_ref()
    }

    fn load() -> Option<UserAgentRules> {
        let regexes: ua_parser::Regexes<'_> = serde_json::from_str(UAP_REGEXES).ok()?;
        let stored: Option<StoredAtoms> = serde_json::from_str(UAP_ATOMS).ok();
        let rules = |kind: RuleKind,
                     parsers: Vec<RuleSpec<'_>>,
                     stored: Option<Vec<Option<Vec<String>>>>| {
            // Atoms stored for exactly these rules; else computed (slower start).
            let stored = stored.filter(|s| s.len() == parsers.len());
            let rules = parsers
                .into_iter()
                .enumerate()
                .map(|(i, (pattern, ci, replacements))| {
                    let pattern = rewrite_regex(pattern).into_owned();
                    let atoms = match &stored {
                        Some(s) => s[i]
                            .as_ref()
                            .map(|a| a.iter().map(|x| x.as_bytes().to_vec()).collect()),
                        None => pattern_atoms(&pattern, ci),
                    };
                    Rule {
                        kind,
                        pattern,
                        case_insensitive: ci,
                        replacements,
                        atoms,
                        compiled: OnceLock::new(),
                        ascii: OnceLock::new(),
                    }
                })
                .collect();
            RuleSet::new(rules)
        };
        let boxed = |s: &Option<Cow<'_, str>>| s.as_deref().map(Box::from);
        let agents = regexes
            .user_agent_parsers
            .iter()
            .map(|p| {
                let r = [
                    &p.family_replacement,
                    &p.v1_replacement,
                    &p.v2_replacement,
                    &p.v3_replacement,
                ];
                (&*p.regex, false, r.map(boxed))
            })
            .collect();
        let os = regexes
            .os_parsers
            .iter()
            .map(|p| {
                let r = [
                    &p.os_replacement,
                    &p.os_v1_replacement,
                    &p.os_v2_replacement,
                    &p.os_v3_replacement,
                ];
                (&*p.regex, false, r.map(boxed))
            })
            .collect();
        let devices = regexes
            .device_parsers
            .iter()
            .map(|p| {
                let ci = p.regex_flag == Some(ua_parser::device::Flag::IgnoreCase);
                (
                    &*p.regex,
                    ci,
                    [boxed(&p.device_replacement), None, None, None],
                )
            })
            .collect();
        let (sa, so, sd) = match stored {
            Some(s) => (
                Some(s.user_agent_parsers),
                Some(s.os_parsers),
                Some(s.device_parsers),
            ),
            None => (None, None, None),
        };
        Some(UserAgentRules {
            agents: rules(RuleKind::Agent, agents, sa),
            os: rules(RuleKind::Os, os, so),
            devices: rules(RuleKind::Device, devices, sd),
        })
    }

    /// Agent, OS and device of a user agent, as ua-parser's `Extractor::extract`.
    pub fn extract(&self, ua: &str) -> Extracted {
        let parsed = |set: &RuleSet| {
            set.first_match(ua).map(|(fields, c)| {
                let [name, major, minor, patch] = fields;
                Parsed {
                    family: name.resolve(&c).unwrap_or_default(),
                    major: major.resolve(&c),
                    minor: minor.resolve(&c),
                    patch: patch.resolve(&c),
                }
            })
        };
        Extracted {
            agent: parsed(&self.agents),
            os: parsed(&self.os),
            device: parsed(&self.devices).map(|d| d.family),
        }
    }
}

/// The atoms of a rule: lower-case strings one of which (ASCII case-insensitively)
/// every match contains; `None` when no such set was found.
fn rule_atoms(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    let atoms = atoms(hir)?;
    (min_len(&atoms) >= MIN_ATOM_LEN).then_some(atoms)
}

fn min_len(atoms: &[Vec<u8>]) -> usize {
    atoms.iter().map(Vec::len).min().unwrap_or(0)
}

/// The one ASCII byte (lower case) a literal or class stands for, ignoring case, or
/// `None`. A case-insensitive `s` or `k` class also holds `ſ` or the Kelvin sign:
/// harmless, since the prefilter is only used on ASCII input.
fn single_byte(hir: &Hir) -> Option<u8> {
    match hir.kind() {
        HirKind::Literal(lit) if lit.0.len() == 1 && lit.0[0].is_ascii() => {
            Some(lit.0[0].to_ascii_lowercase())
        }
        HirKind::Class(Class::Unicode(class)) => {
            let mut byte: Option<u8> = None;
            for range in class.ranges() {
                for c in range.start()..=range.end() {
                    if !c.is_ascii() {
                        if matches!(c, '\u{17F}' | '\u{212A}') {
                            continue;
                        }
                        return None;
                    }
                    let lower = (c as u8).to_ascii_lowercase();
                    match byte {
                        None => byte = Some(lower),
                        Some(b) if b == lower => {}
                        Some(_) => return None,
                    }
                }
            }
            byte
        }
        _ => None,
    }
}

/// Literal bytes of a literal node, lower case.
fn literal_bytes(hir: &Hir) -> Option<Vec<u8>> {
    match hir.kind() {
        HirKind::Literal(lit) => Some(lit.0.to_ascii_lowercase()),
        _ => single_byte(hir).map(|b| vec![b]),
    }
}

/// Prefers the atom set with the longest shortest atom, then the smaller set.
fn better(best: Option<Vec<Vec<u8>>>, candidate: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    match best {
        Some(b)
            if (min_len(&b), std::cmp::Reverse(b.len()))
                >= (min_len(&candidate), std::cmp::Reverse(candidate.len())) =>
        {
            Some(b)
        }
        _ => Some(candidate),
    }
}

/// A set of strings one of which every match of `hir` contains (see [`rule_atoms`]).
fn atoms(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Literal(_) | HirKind::Class(_) => literal_bytes(hir).map(|b| vec![b]),
        HirKind::Capture(cap) => atoms(&cap.sub),
        HirKind::Repetition(rep) if rep.min >= 1 => atoms(&rep.sub),
        HirKind::Alternation(alts) => {
            let mut all = Vec::new();
            for alt in alts {
                all.extend(atoms(alt)?);
            }
            all.sort();
            all.dedup();
            Some(all)
        }
        HirKind::Concat(parts) => {
            // Adjacent literal parts form one run; any run, or any part's own atoms,
            // is a valid answer: keep the most selective.
            let mut best: Option<Vec<Vec<u8>>> = None;
            let mut run: Vec<u8> = Vec::new();
            for part in parts {
                if let Some(bytes) = literal_bytes(part) {
                    run.extend_from_slice(&bytes);
                    continue;
                }
                if !run.is_empty() {
                    best = better(best, vec![std::mem::take(&mut run)]);
                }
                if let Some(a) = atoms(part) {
                    best = better(best, a);
                }
            }
            if !run.is_empty() {
                best = better(best, vec![run]);
            }
            best
        }
        _ => None,
    }
}

/// ua-parser's `rewrite_regex` (0.2.2, Apache-2.0), which is private there: character
/// classes `\d \D \w \W` to ASCII and bounded repetitions `{0,NNN}`/`{1,NNN}` (three or
/// more digits) to `*`/`+`, for smaller regexes and uap-core's intended semantics.
fn rewrite_regex(re: &str) -> Cow<'_, str> {
    let mut from = 0;
    let mut out = String::new();

    let mut it = re.char_indices();
    let mut escape = false;
    let mut inclass = 0;
    'main: while let Some((idx, c)) = it.next() {
        match c {
            '\\' if !escape => {
                escape = true;
                continue;
            }
            '{' if !escape && inclass == 0 => {
                if idx == 0 {
                    return re.into();
                }
                let Some((_, start)) = it.next() else {
                    continue;
                };
                if start != '0' && start != '1' {
                    continue;
                }
                if !matches!(it.next(), Some((_, ','))) {
                    continue;
                }
                let mut digits = 0;
                for (ri, rc) in it.by_ref() {
                    match rc {
                        '}' if digits > 2 => {
                            out.push_str(&re[from..idx]);
                            from = ri + 1;
                            out.push_str(if start == '0' { "*" } else { "+" });
                            break;
                        }
                        c if c.is_ascii_digit() => {
                            digits += 1;
                        }
                        _ => continue 'main,
                    }
                }
            }
            '[' if !escape => {
                inclass += 1;
            }
            ']' if !escape => {
                inclass -= 1;
            }
            'd' if escape => {
                out.push_str(&re[from..idx - 1]);
                from = idx + 1;
                out.push_str("[0-9]");
            }
            'D' if escape => {
                out.push_str(&re[from..idx - 1]);
                from = idx + 1;
                out.push_str("[^0-9]");
            }
            'w' if escape => {
                out.push_str(&re[from..idx - 1]);
                from = idx + 1;
                out.push_str("[A-Za-z0-9_]");
            }
            'W' if escape => {
                out.push_str(&re[from..idx - 1]);
                from = idx + 1;
                out.push_str("[^A-Za-z0-9_]");
            }
            _ => (),
        }
        escape = false;
    }

    if from == 0 {
        re.into()
    } else {
        out.push_str(&re[from..]);
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agents of every kind the rules distinguish: browsers, mobile devices (some rules
    /// case-insensitive), bots, SDKs and tools, templated replacements, odd input.
    const AGENTS: &[&str] = &[
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.178 Mobile Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:122.0) Gecko/20100101 Firefox/122.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.66",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 OPR/107.0.0.0",
        "Mozilla/5.0 (iPad; CPU OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/122.0.6261.89 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
        "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0)",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.6261.94 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Twitterbot/1.0",
        "curl/8.4.0",
        "Wget/1.21.2",
        "python-requests/2.31.0",
        "Go-http-client/1.1",
        "okhttp/4.12.0",
        "Java/17.0.9",
        "Apache-HttpClient/4.5.14 (Java/17.0.9)",
        "aws-cli/2.15.19 Python/3.11.6 Linux/6.1.72-96.166.amzn2023.x86_64 exe/x86_64.amzn.2023 prompt/off command/s3.cp",
        "aws-sdk-java/2.21.29 Linux/5.10.205-195.807.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.9+8-LTS Java/17.0.9 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy",
        "Boto3/1.34.34 md/Botocore#1.34.34 ua/2.0 os/linux#6.1.72 md/arch#x86_64 lang/python#3.11.6 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.34",
        "aws-sdk-go-v2/1.24.1 os/linux lang/go#1.21.6 md/GOOS#linux md/GOARCH#amd64 api/s3#1.48.1",
        "Amazon CloudFront",
        "ELB-HealthChecker/2.0",
        "sqlmap/1.7.12#stable (https://sqlmap.org)",
        "PostmanRuntime/7.36.3",
        "Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebkit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
        "Mozilla/5.0 (Linux; Android 9; Redmi Note 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 11; moto g(30)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 12; HUAWEI P30 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0 Mobile Safari/537.36",
        "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/538.1 (KHTML, like Gecko) Version/6.0 TV Safari/538.1",
        "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.15063",
        "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54",
        "BlackBerry9700/5.0.0.862 Profile/MIDP-2.1 Configuration/CLDC-1.1 VendorID/331",
        "Dalvik/2.1.0 (Linux; U; Android 12; SM-G991B Build/SP1A.210812.016)",
        "MOBILE BOT/1.0 (iPhone; spider)",
        "android application - HTC HTC_One_M8 s",
        "Mozilla/5.0 (Linux; Android 8.0; Pixel 2 Build/OPD3.170816.012) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/93.0.4577.82 Mobile Safari/537.36 AdsBot-Google-Mobile",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 14_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 155.0.0.37.107",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 ſpider Kbot",
        "Mozilla/5.0 (Linux; Android 10; K) — résumé Chrome/122.0.0.0",
        "",
        "-",
        "Other",
        "Mozilla/5.0",
    ];

    #[test]
    fn results_match_ua_parser() {
        let regexes: ua_parser::Regexes<'_> = serde_json::from_str(UAP_REGEXES).unwrap();
        let reference = ua_parser::Extractor::try_from(regexes).unwrap();
        let rules = UserAgentRules::get().unwrap();
        for ua in AGENTS {
            let (agent, os, device) = reference.extract(ua);
            let expected = Extracted {
                agent: agent.map(|a| Parsed {
                    family: a.family.into_owned(),
                    major: a.major.map(str::to_owned),
                    minor: a.minor.map(str::to_owned),
                    patch: a.patch.map(str::to_owned),
                }),
                os: os.map(|o| Parsed {
                    family: o.os.into_owned(),
                    major: o.major.map(Cow::into_owned),
                    minor: o.minor.map(Cow::into_owned),
                    patch: o.patch.map(Cow::into_owned),
                }),
                device: device.map(|d| d.device.into_owned()),
            };
            assert_eq!(rules.extract(ua), expected, "{ua}");
        }
    }

    #[test]
    fn atoms_are_required_substrings() {
        let atoms_of = |pattern: &str, ci: bool| {
            let hir = regex_syntax::ParserBuilder::new()
                .case_insensitive(ci)
                .build()
                .parse(pattern)
                .unwrap();
            rule_atoms(&hir).map(|a| {
                a.into_iter()
                    .map(|b| String::from_utf8(b).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            atoms_of(r"(Chrome)/(\d+)\.(\d+)", false),
            Some(vec!["chrome".to_owned()])
        );
        assert_eq!(
            atoms_of(r"(?:Opera Mini|Firefox)/(\d+)", false),
            Some(vec!["firefox".to_owned(), "opera mini".to_owned()])
        );
        // Case-insensitive letters are classes; they still form one atom.
        assert_eq!(atoms_of("bot/", true), Some(vec!["bot/".to_owned()]));
        // An optional part or a lone character says nothing.
        assert_eq!(atoms_of("(?:Foo)?x", false), None);
        assert_eq!(atoms_of(".*", false), None);
        // Only some rules have no atom; most are filtered.
        let rules = UserAgentRules::get().unwrap();
        for set in [&rules.agents, &rules.os, &rules.devices] {
            assert!(
                set.unfiltered.len() * 10 < set.rules.len(),
                "{}",
                set.unfiltered.len()
            );
        }
    }

    #[test]
    fn stored_atoms_are_current() {
        let computed = computed_atoms().unwrap();
        if std::env::var_os("ALF_WRITE_UA_ATOMS").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/uap-atoms.json");
            std::fs::write(path, serde_json::to_string(&computed).unwrap()).unwrap();
            return;
        }
        let stored: StoredAtoms = serde_json::from_str(UAP_ATOMS).unwrap();
        assert!(
            stored == computed,
            "data/uap-atoms.json is stale: ALF_WRITE_UA_ATOMS=1 cargo test -p alf-formats --lib stored_atoms"
        );
    }

    #[test]
    fn rules_compile_only_for_candidates() {
        let rules = UserAgentRules::load().unwrap();
        rules.extract("curl/8.4.0");
        let compiled = [&rules.agents, &rules.os, &rules.devices]
            .iter()
            .map(|s| {
                s.rules
                    .iter()
                    .filter(|r| r.compiled.get().is_some() || r.ascii.get().is_some())
                    .count()
            })
            .sum::<usize>();
        assert!(compiled < 60, "{compiled} rules compiled for curl");
    }
}
