//! A small, linear-time pattern language for string ids (no regex engine needed).
//!
//! Literal characters match themselves; `\d` a digit, `\l` a-z, `\u` A-Z, `\a` a letter,
//! `\w` `[A-Za-z0-9_]`, `\\` a backslash. A class may be followed by `{n}` or `{n,m}`.
//! The whole id must match. Example: `ZTF\d{2}\l{7}` matches `ZTF18aabcdef`.

use std::fmt;

/// A compiled id pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct IdPattern {
    source: String,
    atoms: Vec<Atom>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Literal(char),
    Digit,
    Lower,
    Upper,
    Alpha,
    Word,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Atom {
    class: Class,
    min: usize,
    max: usize,
}

impl Class {
    fn matches(self, c: char) -> bool {
        match self {
            Class::Literal(l) => c == l,
            Class::Digit => c.is_ascii_digit(),
            Class::Lower => c.is_ascii_lowercase(),
            Class::Upper => c.is_ascii_uppercase(),
            Class::Alpha => c.is_ascii_alphabetic(),
            Class::Word => c.is_ascii_alphanumeric() || c == '_',
        }
    }
}

impl IdPattern {
    /// Compiles a pattern; the error says what is wrong with it.
    pub fn new(source: &str) -> Result<Self, String> {
        let mut atoms = Vec::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            let class = match c {
                '\\' => match chars.next() {
                    Some('d') => Class::Digit,
                    Some('l') => Class::Lower,
                    Some('u') => Class::Upper,
                    Some('a') => Class::Alpha,
                    Some('w') => Class::Word,
                    Some('\\') => Class::Literal('\\'),
                    other => {
                        return Err(format!(
                            "unknown class \\{}; expected one of \\d \\l \\u \\a \\w \\\\",
                            other.map(String::from).unwrap_or_default()
                        ))
                    }
                },
                '{' | '}' => return Err("a repetition {n} or {n,m} must follow a class".into()),
                c => Class::Literal(c),
            };
            let (mut min, mut max) = (1, 1);
            if chars.peek() == Some(&'{') {
                chars.next();
                let body: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let parse = |s: &str| {
                    s.trim().parse::<usize>().map_err(|_| {
                        format!("bad repetition {{{body}}}; expected {{n}} or {{n,m}}")
                    })
                };
                (min, max) = match body.split_once(',') {
                    Some((a, b)) => (parse(a)?, parse(b)?),
                    None => (parse(&body)?, parse(&body)?),
                };
                if min > max || max > 256 {
                    return Err(format!("bad repetition {{{body}}}; need n <= m <= 256"));
                }
            }
            atoms.push(Atom { class, min, max });
        }
        Ok(IdPattern {
            source: source.to_owned(),
            atoms,
        })
    }

    /// Whether the whole of `id` matches.
    pub fn matches(&self, id: &str) -> bool {
        // Atoms are greedy-with-backtracking over a small set of positions: track every
        // reachable char offset after each atom (at most id.len() + 1 of them).
        let chars: Vec<char> = id.chars().collect();
        let mut reachable = vec![false; chars.len() + 1];
        reachable[0] = true;
        for atom in &self.atoms {
            let mut next = vec![false; chars.len() + 1];
            for start in (0..=chars.len()).filter(|&i| reachable[i]) {
                let mut count = 0;
                if atom.min == 0 {
                    next[start] = true;
                }
                while count < atom.max {
                    match chars.get(start + count) {
                        Some(&c) if atom.class.matches(c) => count += 1,
                        _ => break,
                    }
                    if count >= atom.min {
                        next[start + count] = true;
                    }
                }
            }
            reachable = next;
        }
        reachable[chars.len()]
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdPattern({:?})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ztf_pattern_matches_ztf_ids_only() {
        let p = IdPattern::new(r"ZTF\d{2}\l{7}").unwrap();
        assert!(p.matches("ZTF18aabcdef"));
        assert!(p.matches("ZTF20aabaesm"));
        for bad in [
            "ZTF18aabcde",
            "ZTF18aabcdefg",
            "ztf18aabcdef",
            "ZTF1xaabcdef",
            "",
        ] {
            assert!(!p.matches(bad), "{bad}");
        }
    }

    #[test]
    fn ranges_backtrack() {
        let p = IdPattern::new(r"\w{1,5}x").unwrap();
        assert!(p.matches("abx"));
        assert!(p.matches("xxxxx") && !p.matches("xxxxxxx"));
        assert!(IdPattern::new(r"a{0,2}b").unwrap().matches("b"));
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(IdPattern::new(r"\q").unwrap_err().contains("unknown class"));
        assert!(IdPattern::new(r"a{3,1}")
            .unwrap_err()
            .contains("repetition"));
        assert!(IdPattern::new(r"{2}").unwrap_err().contains("must follow"));
        assert!(IdPattern::new(r"a{x}").unwrap_err().contains("repetition"));
    }
}
