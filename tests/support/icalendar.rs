//! A real iCalendar parser for the feed's tests: Python's `icalendar` (PyPI, pinned), in its
//! own virtualenv under `target/` made by `python.rs` as for moto and schemathesis. The script
//! parses the feed as a calendar app would and prints what it read as JSON.

use super::python;
use std::io::Write;
use std::process::{Command, Stdio};

const ICALENDAR: &str = "icalendar==7.3.0";

/// Reads the calendar's properties and each VEVENT's; times as RFC 3339 in UTC, which also
/// checks that every DTSTART/DTEND is a UTC date-time (a floating or local time has no `Z`
/// offset and is refused here).
const READ: &str = r#"
import json, sys, datetime
from icalendar import Calendar
cal = Calendar.from_ical(sys.stdin.buffer.read())
def utc(prop):
    dt = prop.dt
    if not isinstance(dt, datetime.datetime) or dt.utcoffset() != datetime.timedelta(0):
        raise SystemExit(f"not a UTC date-time: {dt!r}")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
events = []
for e in cal.walk("VEVENT"):
    events.append({
        "uid": str(e["UID"]),
        "start": utc(e["DTSTART"]),
        "end": utc(e["DTEND"]),
        "stamp": utc(e["DTSTAMP"]),
        "summary": str(e["SUMMARY"]),
        "description": str(e["DESCRIPTION"]),
        "categories": [str(c) for c in e["CATEGORIES"].cats],
    })
print(json.dumps({
    "version": str(cal["VERSION"]),
    "prodid": str(cal["PRODID"]),
    "events": events,
}))
"#;

#[derive(Debug, serde::Deserialize)]
pub struct Parsed {
    pub version: String,
    pub prodid: String,
    pub events: Vec<ParsedEvent>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ParsedEvent {
    pub uid: String,
    pub start: String,
    pub end: String,
    pub stamp: String,
    pub summary: String,
    pub description: String,
    pub categories: Vec<String>,
}

/// Parses `ics` with the real parser; `None` when it cannot be installed outside CI (the test
/// then says it was skipped). A feed the parser refuses fails the test with its message.
pub fn parse(ics: &str) -> Option<Parsed> {
    let venv = python::required(
        "icalendar",
        python::venv("icalendar-venv", ICALENDAR, |venv| {
            python::runs(&venv.join("bin/python"), &["-c", "import icalendar"])
        }),
    )?;
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-c", READ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(ics.as_bytes())
        .expect("write the feed");
    let out = child.wait_with_output().expect("python's output");
    assert!(
        out.status.success(),
        "icalendar refused the feed: {}\n{ics}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the script's JSON"))
}
