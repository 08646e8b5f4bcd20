//! A small iCalendar (RFC 5545) writer: just what the calendar feed needs (one VCALENDAR of
//! VEVENTs with UTC times), done by the rules calendar apps are strict about: CRLF line ends
//! (§3.1), lines folded at 75 octets without splitting a UTF-8 character (§3.1), and TEXT values
//! escaped (§3.3.11). Writing it here costs no dependency; `tests/all/calendar.rs` checks the
//! output with a real parser (Python's `icalendar`).

use chrono::{DateTime, Utc};

/// One event. `uid` must be the same for the same thing on every fetch, so calendar apps
/// update it instead of adding a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub uid: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub summary: String,
    pub description: String,
    /// `CATEGORIES`, e.g. "window", "freeze", "change".
    pub category: &'static str,
    /// A window is information, not a busy stretch of anyone's day: `TRANSP:TRANSPARENT`.
    pub transparent: bool,
}

/// `20261207T220000Z`: DATE-TIME in UTC form (§3.3.5, FORM #2).
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// TEXT escaping (§3.3.11): backslash, semicolon and comma get a backslash, a newline becomes
/// `\n`; a carriage return goes (a CRLF in a value is one line break).
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            // Other control characters are not allowed in TEXT (§3.1, "CONTROL").
            c if c.is_control() && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Appends one content line, folded so no line is longer than 75 octets (continuation lines
/// start with a space, which counts towards their 75), each ended by CRLF.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

/// The whole calendar: `name` is shown by apps as the calendar's title, `stamp` is DTSTAMP
/// (when this copy was made), `refresh_minutes` how often apps should fetch it again.
pub fn calendar(
    name: &str,
    stamp: DateTime<Utc>,
    refresh_minutes: u32,
    events: &[Event],
) -> String {
    let mut out = String::new();
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, "PRODID:-//CommandBridge//Change calendar//EN");
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "METHOD:PUBLISH");
    line(&mut out, &format!("X-WR-CALNAME:{}", escape_text(name)));
    // RFC 7986's REFRESH-INTERVAL, and the older name many apps still read.
    line(
        &mut out,
        &format!("REFRESH-INTERVAL;VALUE=DURATION:PT{refresh_minutes}M"),
    );
    line(&mut out, &format!("X-PUBLISHED-TTL:PT{refresh_minutes}M"));
    for e in events {
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}", escape_text(&e.uid)));
        line(&mut out, &format!("DTSTAMP:{}", utc(stamp)));
        line(&mut out, &format!("DTSTART:{}", utc(e.start)));
        line(&mut out, &format!("DTEND:{}", utc(e.end)));
        line(&mut out, &format!("SUMMARY:{}", escape_text(&e.summary)));
        line(
            &mut out,
            &format!("DESCRIPTION:{}", escape_text(&e.description)),
        );
        line(&mut out, &format!("CATEGORIES:{}", escape_text(e.category)));
        line(
            &mut out,
            if e.transparent {
                "TRANSP:TRANSPARENT"
            } else {
                "TRANSP:OPAQUE"
            },
        );
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Undoes folding (§3.1: a CRLF followed by one space or tab is removed).
    fn unfold(s: &str) -> String {
        s.replace("\r\n ", "").replace("\r\n\t", "")
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape_text("a, b; c\\d\r\ne"),
            "a\\, b\\; c\\\\d\\ne".to_string()
        );
        assert_eq!(escape_text("bell\u{7}"), "bell ");
    }

    #[test]
    fn long_lines_fold_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let content = format!("DESCRIPTION:{}", "é".repeat(100));
        line(&mut out, &content);
        assert!(out.ends_with("\r\n"));
        for l in out.trim_end_matches("\r\n").split("\r\n") {
            assert!(l.len() <= 75, "{} octets: {l:?}", l.len());
        }
        assert!(
            out.split("\r\n")
                .skip(1)
                .all(|l| l.is_empty() || l.starts_with(' '))
        );
        assert_eq!(unfold(&out), format!("{content}\r\n"));
        // A line of exactly 75 octets is not folded.
        let mut out = String::new();
        line(&mut out, &"x".repeat(75));
        assert_eq!(out, format!("{}\r\n", "x".repeat(75)));
    }

    #[test]
    fn a_calendar_has_its_header_and_every_line_ends_in_crlf() {
        let e = Event {
            uid: "window-offpeak-20261207T220000Z@commandbridge".into(),
            start: at("2026-12-07T22:00:00Z"),
            end: at("2026-12-08T06:00:00Z"),
            summary: "Off-peak window".into(),
            description: "high, critical".into(),
            category: "window",
            transparent: true,
        };
        let ics = calendar("CommandBridge", at("2026-12-05T10:00:00Z"), 60, &[e]);
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:"));
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
        assert!(!ics.replace("\r\n", "").contains('\n'), "bare LF");
        for want in [
            "UID:window-offpeak-20261207T220000Z@commandbridge\r\n",
            "DTSTAMP:20261205T100000Z\r\n",
            "DTSTART:20261207T220000Z\r\n",
            "DTEND:20261208T060000Z\r\n",
            "DESCRIPTION:high\\, critical\r\n",
            "TRANSP:TRANSPARENT\r\n",
        ] {
            assert!(ics.contains(want), "{want:?} in {ics}");
        }
    }
}
