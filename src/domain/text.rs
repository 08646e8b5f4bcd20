//! Text an operator typed: what counts as visible, so that what a reviewer reads is what runs.
//!
//! Characters that render as nothing or rearrange what is around them (zero-width spaces, the
//! byte-order mark, bidirectional overrides such as U+202E, line and paragraph separators)
//! would let a reason look filled in while it is empty, or a parameter look harmless while it
//! is not. They are refused everywhere free text is taken.

/// Characters that are not seen as themselves: controls, format characters (zero-width, BOM,
/// bidi controls, invisible operators, tags), and every whitespace but the plain space.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c,
            '\u{00AD}' // soft hyphen
            | '\u{034F}' // combining grapheme joiner
            | '\u{061C}' // Arabic letter mark
            | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
            | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' // Mongolian selectors and vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width space, joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates
            | '\u{FE00}'..='\u{FE0F}' // variation selectors
            | '\u{FEFF}' // byte-order mark, zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
            | '\u{E0000}'..='\u{E0FFF}') // tags and variation selectors supplement
}

/// The first invisible character of `s`, as `U+XXXX`, if any.
pub fn first_invisible(s: &str) -> Option<String> {
    s.chars()
        .find(|c| is_invisible(*c))
        .map(|c| format!("U+{:04X}", c as u32))
}

/// The safe shape of a value that fills a command argument (a string parameter, what a capture
/// command printed): 1 to `max` characters, not starting with `-` (a bare `{param}` would become
/// an option of the command), and nothing invisible (what a reviewer reads is what runs).
pub fn argument_shape(s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > max {
        return Err(format!("it must be 1 to {max} characters"));
    }
    if s.starts_with('-') {
        return Err("a leading '-' would be read as a command option".into());
    }
    if let Some(c) = first_invisible(s) {
        return Err(format!("it contains {c}"));
    }
    Ok(())
}

/// Free text such as a reason: trimmed, not empty, at most `max` characters, with no invisible
/// character but the line break (a reason may have several lines).
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, String> {
    let v = value.trim_matches(|c: char| c.is_whitespace() || is_invisible(c));
    if v.is_empty() {
        return Err(
            match value
                .chars()
                .find(|c| is_invisible(*c) && !c.is_whitespace())
            {
                Some(c) => format!(
                    "{field} is required: it holds only invisible characters (U+{:04X}); type \
                     it out",
                    c as u32
                ),
                None => format!("{field} is required"),
            },
        );
    }
    if v.chars().count() > max {
        return Err(format!("{field} is too long: at most {max} characters"));
    }
    if let Some(c) = v.chars().find(|c| *c != '\n' && is_invisible(*c)) {
        return Err(format!(
            "{field} contains an invisible or control character (U+{:04X}): use plain text \
             (line breaks are fine)",
            c as u32
        ));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_named() {
        for c in [
            '\u{0}',
            '\t',
            '\u{7F}',
            '\u{85}',
            '\u{A0}',
            '\u{AD}',
            '\u{200B}',
            '\u{200D}',
            '\u{2028}',
            '\u{2029}',
            '\u{202E}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{E0041}',
        ] {
            assert!(is_invisible(c), "U+{:04X}", c as u32);
        }
        for c in ['a', ' ', '-', 'é', 'ß', '漢', '😀', '=', '/'] {
            assert!(!is_invisible(c), "{c}");
        }
        assert_eq!(first_invisible("web\u{202E}1"), Some("U+202E".into()));
        assert_eq!(first_invisible("web-1"), None);
    }

    #[test]
    fn argument_shape_refuses_options_and_hidden_characters() {
        assert_eq!(argument_shape("7", 8), Ok(()));
        assert!(argument_shape("", 8).unwrap_err().contains("1 to 8"));
        assert!(
            argument_shape("123456789", 8)
                .unwrap_err()
                .contains("1 to 8")
        );
        assert!(
            argument_shape("--kubeconfig=x", 80)
                .unwrap_err()
                .contains("leading '-'")
        );
        assert!(
            argument_shape("a\u{200B}", 8)
                .unwrap_err()
                .contains("U+200B")
        );
    }

    #[test]
    fn required_text_refuses_what_only_looks_filled_in() {
        assert_eq!(
            required_text("reason", "  scraper  ", 10),
            Ok("scraper".into())
        );
        assert_eq!(
            required_text("reason", "two\nlines", 20),
            Ok("two\nlines".into())
        );
        let bom = required_text("reason", "\u{FEFF}", 10).unwrap_err();
        assert!(bom.contains("only invisible characters (U+FEFF)"), "{bom}");
        let zw = required_text("reason", "\u{200B}\u{200B}", 10).unwrap_err();
        assert!(zw.contains("reason is required"), "{zw}");
        assert_eq!(
            required_text("reason", "   ", 10).unwrap_err(),
            "reason is required"
        );
        let rlo = required_text("reason", "ok \u{202E}evil", 20).unwrap_err();
        assert!(rlo.contains("U+202E"), "{rlo}");
        let long = required_text("reason", "abcdef", 5).unwrap_err();
        assert!(long.contains("at most 5"), "{long}");
    }
}
