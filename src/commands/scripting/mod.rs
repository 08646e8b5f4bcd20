//! The scripting commands: `login`, `change`, `window`, `incident` and `verification`.
//!
//! Each one resolves the server and token, makes one or two API calls and prints either the
//! server's body (`--json`, for scripts) or a compact form for people. Failures come back as
//! errors whose text is the server's own message; `main` prints it and exits non-zero.
//!
//! This room holds what every command shares: connecting with the saved or environment
//! credentials, printing (`--json` or the human form, neither with a character a terminal would
//! obey, see `terminal_text`; a reader gone away is no panic) and the common ways to write a time
//! or a policy outcome. Each command family has its own module beside
//! it, with the way it reads for people, so a change to one command's output touches one file.

mod change;
mod change_format;
mod incident;
mod login;
mod terminal_text;
mod verification;
mod window;

pub use change::{change, parse_params};
pub use incident::incident;
pub use login::login;
pub use terminal_text::printable;
pub use verification::verification;
pub use window::window;

use crate::client::{ApiClient, settings};
use crate::domain::policy::Outcome;
use chrono::{DateTime, Utc};
use color_eyre::eyre::{Result, WrapErr};
use serde::Serialize;
use std::io::{self, Write as _};

pub(super) fn connect() -> Result<ApiClient> {
    let (creds, warnings) = settings::resolve()?;
    for warning in warnings {
        eprintln!("warning: {}", printable(&warning));
    }
    Ok(ApiClient::with_ca_file(
        &creds.server,
        &creds.token,
        creds.ca_file.as_deref(),
    )?)
}

/// Prints the server's body as pretty JSON, or the human form.
pub(super) fn emit<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> Result<()> {
    if json {
        let text =
            serde_json::to_string_pretty(value).wrap_err("cannot print the answer as JSON")?;
        write_line(&terminal_text::printable_json(&text))
    } else {
        out(&human(value))
    }
}

/// `println!` for people: what the server sent is shown, never obeyed by the terminal
/// ([`printable`]), and a reader who went away (`| head`) is not a panic.
pub(super) fn out(text: &str) -> Result<()> {
    write_line(&printable(text))
}

fn write_line(text: &str) -> Result<()> {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).wrap_err("cannot write output"),
        _ => Ok(()),
    }
}

pub(super) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(super) fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Execute => "execute",
        Outcome::NeedsApproval => "needs_approval",
        Outcome::Blocked => "blocked",
    }
}

/// A change as the server sends it, for the tests of the commands that print or judge one.
#[cfg(test)]
mod fixtures {
    use crate::domain::action::Risk;
    use crate::domain::approval::Requirement;
    use crate::domain::change::{Change, ChangeState};
    use crate::domain::level::Level;
    use chrono::{DateTime, TimeZone, Utc};
    use std::collections::BTreeMap;

    pub(super) fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 6, h, m, 0)
            .single()
            .expect("valid time")
    }

    pub(super) fn change(id: i64, state: ChangeState) -> Change {
        Change {
            id,
            state,
            action: "blacklist-ip".into(),
            risk: Risk::High,
            ticket: "CHG-1".into(),
            target: "edge-1".into(),
            params: BTreeMap::from([("ip".to_string(), "203.0.113.7".to_string())]),
            reason: "abusive client".into(),
            requested_by: "alice".into(),
            requested_level: Level::L1,
            created_at: t(10, 0),
            updated_at: t(10, 0),
            expires_at: t(14, 0),
            approvals: Vec::new(),
            approvals_required: vec![Requirement::Level {
                min: Level::L2,
                count: 1,
            }],
            warnings: Vec::new(),
            outcome_reason: None,
            decided_by: None,
            output: None,
            rollback_of: None,
            emergency: None,
            captured: None,
            command: None,
            run_at: None,
            conflicts: Vec::new(),
        }
    }
}
