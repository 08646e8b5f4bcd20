//! `window at`, `window export --ics` and `calendar feed-url | feeds | revoke`: the calendar
//! outside the dashboard. Same client and the same printing rules as `scripting.rs` (`--json`
//! prints the server's body); the feed is the server's, never encoded a second time here.

use super::scripting::{connect, emit, outcome_str, printable, when};
use crate::cli::CalendarCommand;
use crate::client::ApiClient;
use crate::domain::calendar::{CalendarOpen, CalendarState, Feed, FeedCreated, FeedRequest};
use color_eyre::eyre::{Result, WrapErr};
use std::io::Write as _;
use std::path::Path;

/// `commandbridge window at TIME`: the server reads TIME (RFC 3339 or `now`) and says what is
/// wrong with it, so the CLI and the API give the same message.
pub async fn window_at(client: &ApiClient, time: &str, json: bool) -> Result<()> {
    let state = client.window_at(time).await?;
    emit(json, &state, format_state)
}

/// `commandbridge window export --ics`: the server's feed as it is, to a file or stdout.
pub async fn export_ics(client: &ApiClient, output: Option<&Path>) -> Result<()> {
    let body = client.calendar_ics().await?;
    match output {
        Some(path) => {
            std::fs::write(path, &body)
                .wrap_err_with(|| format!("cannot write {}", path.display()))?;
            let events = body.matches("BEGIN:VEVENT").count();
            eprintln!("wrote {} ({events} events)", path.display());
            Ok(())
        }
        // The body already ends in CRLF: print it as it is, unless a person reads it.
        None => {
            use std::io::IsTerminal as _;
            let mut stdout = std::io::stdout().lock();
            let body = if stdout.is_terminal() {
                printable(&body)
            } else {
                body.as_str().into()
            };
            match stdout
                .write_all(body.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(e).wrap_err("cannot write output")
                }
                _ => Ok(()),
            }
        }
    }
}

/// `commandbridge calendar …`.
pub async fn calendar(cmd: &CalendarCommand) -> Result<()> {
    let client = connect()?;
    match cmd {
        CalendarCommand::FeedUrl { label, json } => {
            let req = FeedRequest {
                label: label.clone().unwrap_or_default(),
            };
            let created = client.create_calendar_feed(&req).await?;
            let server = client.server().to_string();
            emit(*json, &created, |c| format_created(&server, c))
        }
        CalendarCommand::Feeds {
            limit,
            before,
            json,
        } => {
            let page = client.calendar_feeds_page(*before, Some(*limit)).await?;
            emit(*json, &page.items, |f| {
                if f.is_empty() {
                    "no calendar feeds (create one with `commandbridge calendar feed-url`)".into()
                } else {
                    f.iter().map(format_feed).collect::<Vec<_>>().join("\n")
                }
            })?;
            if let Some(next) = page.next_before {
                // On stderr, so `--json` output stays one document.
                eprintln!("more feeds: --before {next}");
            }
            Ok(())
        }
        CalendarCommand::Revoke { id, json } => {
            let feed = client.revoke_calendar_feed(*id).await?;
            emit(*json, &feed, |f| format!("revoked {}", format_feed(f)))
        }
    }
}

fn format_created(server: &str, c: &FeedCreated) -> String {
    [
        format!("{server}{}", c.path),
        format!(
            "  feed #{} '{}': add this URL to a calendar app (subscribe by URL). It is shown \
             once; it grants nothing but the calendar feed.",
            c.feed.id, c.feed.label
        ),
        format!(
            "  revoke it with `commandbridge calendar revoke {}`",
            c.feed.id
        ),
    ]
    .join("\n")
}

fn format_feed(f: &Feed) -> String {
    let state = match (&f.revoked_at, &f.revoked_by) {
        (Some(at), Some(by)) => format!("revoked {} by {by}", when(*at)),
        (Some(at), None) => format!("revoked {}", when(*at)),
        _ => "active".to_string(),
    };
    format!(
        "#{}  {}  {state}  created by {} at {}",
        f.id,
        f.label,
        f.created_by,
        when(f.created_at)
    )
}

fn format_state(s: &CalendarState) -> String {
    let mut lines = vec![format!(
        "{}  at {}",
        match s.state {
            CalendarOpen::Open => "OPEN",
            CalendarOpen::Closed => "CLOSED",
        },
        when(s.time)
    )];
    match &s.open {
        Some(o) => lines.push(format!(
            "  window: {} open until {}",
            o.kind,
            when(o.closes_at)
        )),
        None => lines.push("  window: none open".into()),
    }
    if let Some(f) = &s.freeze {
        lines.push(format!(
            "  freeze: {} from {} until {}",
            f.name,
            when(f.starts_at),
            when(f.ends_at)
        ));
    }
    if let Some(p) = &s.pause {
        lines.push(format!(
            "  paused: {} (by {} since {}, until someone resumes)",
            p.reason,
            p.paused_by,
            when(p.paused_at)
        ));
    }
    lines.push("  a planned change (CHG ticket) requested by you then:".into());
    for r in &s.risks {
        lines.push(format!(
            "    {:<8} {:<14} {}",
            r.risk.as_str(),
            outcome_str(r.decision),
            r.actions.join(", ")
        ));
        lines.extend(
            r.reasons
                .iter()
                .map(|x| format!("             reason: {x}")),
        );
        lines.extend(
            r.warnings
                .iter()
                .map(|w| format!("             warning: {w}")),
        );
    }
    match &s.next_transition {
        Some(n) => lines.push(format!("  next: {} at {}", n.change, when(n.at))),
        None => lines.push("  next: nothing changes (no window or freeze ahead)".into()),
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_feed_prints_the_whole_url_first() {
        let c = FeedCreated {
            feed: Feed {
                id: 3,
                label: "team".into(),
                created_by: "bob".into(),
                created_at: "2026-11-24T10:00:00Z".parse().unwrap(),
                revoked_at: None,
                revoked_by: None,
            },
            secret: "cbf_x".into(),
            path: "/api/v1/calendar.ics?feed=cbf_x".into(),
        };
        let text = format_created("http://127.0.0.1:7878", &c);
        assert_eq!(
            text.lines().next(),
            Some("http://127.0.0.1:7878/api/v1/calendar.ics?feed=cbf_x")
        );
        assert!(text.contains("calendar revoke 3"), "{text}");
    }
}
