//! Text from the server on its way to a terminal. A command's output, a reason, a title or a
//! parameter is whatever somebody wrote, or whatever a command printed (log lines an outsider
//! planted included): printed as it is, `ESC ] 52` would write the reviewer's clipboard, `ESC [ 2J`
//! clear the screen and `\r` overwrite a line with a fake one. Everything the CLI prints for
//! people goes through [`printable`]; `--json` goes through [`printable_json`], which keeps the
//! document exact. Which characters are not seen as themselves is the domain's question
//! (`domain::text::is_invisible`, the rule the server applies to input); this room only decides
//! how they are shown.

use crate::domain::text::is_invisible;
use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control or invisible character (C0 and C1 controls such as ESC, BEL and
/// the one-byte CSI U+009B, bidi overrides, zero-width characters) written as a visible escape:
/// `\x1b` for an ASCII control, `\u{202e}` for the others. Line breaks and tabs stay; a `\r`
/// stays only as part of a `\r\n` line end, anywhere else it is shown as `\r`, since it would
/// let a line overwrite itself.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c != '\n' && c != '\t' && is_invisible(c))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' => out.push_str("\\r"),
            c if c.is_ascii() && is_invisible(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_invisible(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// JSON as serde_json wrote it, with the characters it leaves raw (DEL, C1 controls such as
/// U+009B, bidi overrides, zero-width characters: serde escapes only U+0000 to U+001F) written
/// as `\uXXXX` escapes. Outside strings, JSON holds only ASCII punctuation and whitespace, so
/// every such character is inside a string, and the document parses to the same value.
pub fn printable_json(json: &str) -> Cow<'_, str> {
    let raw = |c: char| c != '\n' && c != ' ' && is_invisible(c);
    if !json.chars().any(raw) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if raw(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_as_it_is() {
        let text = "blocked 203.0.113.7\n\tdone — ok ✓ 漢";
        assert!(matches!(printable(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn terminal_controls_are_shown_not_obeyed() {
        assert_eq!(
            printable("\u{1b}]52;c;aGk=\u{7}\u{1b}[2Jok"),
            "\\x1b]52;c;aGk=\\x07\\x1b[2Jok"
        );
        // The one-character CSI, DEL, NUL and the bidi override have no ASCII escape.
        assert_eq!(printable("a\u{9b}31mb"), "a\\u{9b}31mb");
        assert_eq!(printable("\u{7f}\u{0}"), "\\x7f\\x00");
        assert_eq!(printable("web\u{202e}1"), "web\\u{202e}1");
        assert_eq!(printable("a\u{200b}b"), "a\\u{200b}b");
    }

    #[test]
    fn a_carriage_return_cannot_overwrite_a_line() {
        assert_eq!(printable("one\r\ntwo\n"), "one\ntwo\n");
        assert_eq!(printable("rm -rf /\rls -l   "), "rm -rf /\\rls -l   ");
        assert_eq!(printable("end\r"), "end\\r");
    }

    #[test]
    fn json_keeps_its_value_and_loses_its_raw_controls() {
        let value = serde_json::json!({
            "stdout": "\u{1b}[2J\u{7}a\u{9b}31m\u{202e}b\u{7f}\u{e0041}\n",
            "n": 1,
        });
        let pretty = serde_json::to_string_pretty(&value).expect("json");
        let shown = printable_json(&pretty);
        assert!(
            !shown
                .chars()
                .any(|c| c != '\n' && c != ' ' && is_invisible(c)),
            "{shown}"
        );
        assert!(
            shown.contains("\\u009b") && shown.contains("\\udb40\\udc41"),
            "{shown}"
        );
        let back: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(back, value);
        assert!(matches!(
            printable_json("{\n  \"a\": 1\n}"),
            Cow::Borrowed(_)
        ));
    }
}
