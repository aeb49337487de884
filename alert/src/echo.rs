//! Untrusted text inside messages: a field name, a topic or a gateway's answer is echoed
//! with its control characters escaped (nothing reaches a terminal as an escape sequence)
//! and its length capped (a 1 MB name does not make a 1 MB error).

use std::fmt::Write as _;

/// Characters of untrusted text a message keeps; the rest is summarised.
pub const MAX_ECHO_CHARS: usize = 128;

/// `text` escaped like Rust's `{:?}` without the quotes (control characters, quotes,
/// backslashes and invisible characters as escapes) and cut after `max` characters of
/// output, with the total length of the original noted.
pub fn shown(text: &str, max: usize) -> String {
    cut(text, max, |c, out| out.extend(c.escape_debug()))
}

/// `text` as one line for a terminal: control characters (and the bidirectional
/// overrides that reorder what is shown) escaped, everything else as it is, cut after
/// `max` characters. For whole messages that already quote what they echo.
pub fn line(text: &str, max: usize) -> String {
    cut(text, max, |c, out| {
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    })
}

fn cut(text: &str, max: usize, escape: impl Fn(char, &mut String)) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 24);
    let mut one = String::new();
    let mut kept = 0;
    for (i, c) in text.char_indices() {
        one.clear();
        escape(c, &mut one);
        let width = one.chars().count();
        if kept + width > max {
            let _ = write!(out, "…({} of {} bytes)", i, text.len());
            return out;
        }
        kept += width;
        out.push_str(&one);
    }
    out
}

/// `text` quoted and [`shown`] with the default cap: what `{:?}` prints for a short name.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", shown(text, MAX_ECHO_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_plain_text_is_quoted_like_debug() {
        for s in ["ztf.alerts", "candidate.magpsf", "a \"b\" c", "tab\there"] {
            assert_eq!(quoted(s), format!("{s:?}"));
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let s = shown("red\u{1b}[31m\u{7}\u{9b}2J\r\n", 100);
        assert!(!s.chars().any(char::is_control), "{s}");
        assert_eq!(s, "red\\u{1b}[31m\\u{7}\\u{9b}2J\\r\\n");
    }

    #[test]
    fn a_line_keeps_quotes_and_escapes_terminal_controls() {
        let l = line(
            "topic \"x\" is not exposed\u{1b}]0;pwned\u{7}\n\u{202e}",
            200,
        );
        assert_eq!(
            l,
            "topic \"x\" is not exposed\\u{1b}]0;pwned\\u{7}\\n\\u{202e}"
        );
        let long = line(&"é".repeat(1000), 10);
        assert_eq!(long, format!("{}…(20 of 2000 bytes)", "é".repeat(10)));
    }

    #[test]
    fn long_text_is_capped_and_says_how_long_it_was() {
        let long = "x".repeat(1 << 20);
        let s = quoted(&long);
        assert!(s.len() < MAX_ECHO_CHARS + 40, "{}", s.len());
        assert!(s.ends_with("…(128 of 1048576 bytes)\""), "{s}");
        // An escape is never cut in half.
        let s = shown(&"\u{1b}".repeat(10), 13);
        assert_eq!(s, "\\u{1b}\\u{1b}…(2 of 10 bytes)");
    }

    #[test]
    fn errors_echo_a_huge_field_name_capped() {
        let field = "f".repeat(1 << 20);
        let e = crate::Error::UnknownField { field }.to_string();
        assert!(e.len() < MAX_ECHO_CHARS + 60, "{} bytes", e.len());
        assert!(e.starts_with("unknown field \"fff"), "{e}");
        let e = crate::Error::FilterType {
            field: "\u{1b}[2J".into(),
            reason: "x".into(),
        };
        assert_eq!(e.to_string(), "invalid filter on field \"\\u{1b}[2J\": x");
    }
}
