//! Ticket numbers, in the formats of the process's "Ticket Formats" table.

use chrono::NaiveDate;
use std::fmt;

/// What every refusal of a ticket says, so the operator knows what to type instead.
pub const ACCEPTED_FORMATS: &str = "INC-YYYY-MMDD-NNN (e.g. INC-2026-0214-001), INC-NNN (e.g. INC-001), \
     CHG-<digits> (e.g. CHG-1234) or CHG-<lowercase slug> (e.g. CHG-release-v2)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketKind {
    /// Reactive work during an incident (`INC-…`).
    Incident,
    /// Planned change, maintenance or deployment (`CHG-…`).
    Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub kind: TicketKind,
    text: String,
}

impl Ticket {
    pub fn parse(input: &str) -> Result<Ticket, String> {
        let text = input.trim();
        let refuse = |why: &str| {
            Err(format!(
                "ticket '{text}' is not valid: {why}; accepted formats: {ACCEPTED_FORMATS}"
            ))
        };
        if text.is_empty() {
            return refuse("a ticket is required on every action");
        }
        if let Some(rest) = text.strip_prefix("INC-") {
            let parts: Vec<&str> = rest.split('-').collect();
            return match parts.as_slice() {
                [n] if is_digits(n, 3..=9) => Ok(Ticket::new(TicketKind::Incident, text)),
                [y, md, n] if is_digits(y, 4..=4) && is_digits(md, 4..=4) && is_day_number(n) => {
                    let date = NaiveDate::from_ymd_opt(
                        y.parse().unwrap_or(0),
                        md[..2].parse().unwrap_or(0),
                        md[2..].parse().unwrap_or(0),
                    );
                    match date {
                        Some(_) => Ok(Ticket::new(TicketKind::Incident, text)),
                        None => refuse(&format!("{y}-{md} is not a calendar date")),
                    }
                }
                _ => refuse("an INC ticket is INC- followed by a number or by a date and a number"),
            };
        }
        if let Some(rest) = text.strip_prefix("CHG-") {
            if is_digits(rest, 1..=12) || is_slug(rest) {
                return Ok(Ticket::new(TicketKind::Change, text));
            }
            return refuse("a CHG ticket is CHG- followed by digits or a lowercase slug");
        }
        refuse("it must start with INC- or CHG- (upper case)")
    }

    fn new(kind: TicketKind, text: &str) -> Ticket {
        Ticket {
            kind,
            text: text.to_string(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The number of an incident within its day: three digits (`001`), or more past 999 (`1000`),
/// as CommandBridge numbers them, never with a leading zero beyond three digits.
fn is_day_number(n: &str) -> bool {
    is_digits(n, 3..=3) || (is_digits(n, 4..=9) && !n.starts_with('0'))
}

fn is_digits(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `release-v2`: words of lowercase letters and digits joined by single hyphens, at most 64
/// characters.
fn is_slug(s: &str) -> bool {
    s.len() <= 64
        && s.split('-').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_formats() {
        for (t, kind) in [
            ("INC-2026-0214-001", TicketKind::Incident),
            ("INC-2024-0229-999", TicketKind::Incident),
            ("INC-2024-0229-1000", TicketKind::Incident),
            ("INC-001", TicketKind::Incident),
            ("INC-123456", TicketKind::Incident),
            ("CHG-1234", TicketKind::Change),
            ("CHG-1", TicketKind::Change),
            ("CHG-release-v2", TicketKind::Change),
            ("CHG-db-migration-42", TicketKind::Change),
            ("CHG-2026-q4-release", TicketKind::Change),
            ("  CHG-77  ", TicketKind::Change),
        ] {
            assert_eq!(Ticket::parse(t).map(|t| t.kind), Ok(kind), "{t}");
        }
    }

    #[test]
    fn refused_formats_name_the_accepted_ones() {
        for t in [
            "",
            "INC-2026-0230-001", // no 30 February
            "INC-2025-0229-001", // not a leap year
            "INC-2026-1301-001",
            "INC-2026-0214-01",
            "INC-2026-0214-0001",
            "INC-01",
            "INC-",
            "INC-abc",
            "inc-001",
            "CHG-",
            "CHG-Release-v2",
            "CHG-release_v2",
            "CHG-release--v2",
            "CHG-release-",
            "CHG--release",
            "chg-1234",
            "JIRA-1234",
            "1234",
            "CHG-1234; rm -rf /",
        ] {
            let err = Ticket::parse(t).expect_err(t);
            assert!(err.contains("INC-YYYY-MMDD-NNN"), "{t}: {err}");
            assert!(err.contains("CHG-release-v2"), "{t}: {err}");
        }
    }

    #[test]
    fn keeps_the_trimmed_text() {
        assert_eq!(Ticket::parse(" INC-001 ").unwrap().as_str(), "INC-001");
    }
}
