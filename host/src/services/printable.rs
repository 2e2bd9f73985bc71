//! Text a plugin wrote, made safe for a line of the operator's log: a line break or another
//! control character in a log message, a field or an audit detail would let a plugin forge a
//! line that seems to come from the host, or from another plugin.

use std::borrow::Cow;

/// Whether `c` is escaped: control characters (C0, DEL, C1), the Unicode line and paragraph
/// separators, and the marks that reorder text when shown.
pub(crate) fn escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{61c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `text` with each control character written as an escape (`\n`, `\r`, `\t`, `\u{1b}`): one
/// line, whatever the plugin wrote. Text with none is borrowed as it is.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if escaped(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_other_text_is_kept() {
        assert!(matches!(printable("plain text, ünïcode"), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\nFORGED line\r\u{1b}[31m\u{2028}\u{202e}\u{85}"),
            "a\\nFORGED line\\r\\u{1b}[31m\\u{2028}\\u{202e}\\u{85}"
        );
    }
}
