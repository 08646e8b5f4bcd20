//! `commandbridge window …`: what is open now, and how the window status reads for people; the
//! calendar questions (`window at`, `window export`) are answered in `commands::calendar`.

use super::{connect, emit, when};
use crate::cli::WindowCommand;
use crate::commands::calendar;
use crate::domain::api::WindowStatus;
use color_eyre::eyre::Result;

/// `commandbridge window …`.
pub async fn window(cmd: &WindowCommand) -> Result<()> {
    let client = connect()?;
    match cmd {
        WindowCommand::Now { json } => {
            let status = client.current_window().await?;
            emit(*json, &status, format_window)
        }
        WindowCommand::At { time, json } => calendar::window_at(&client, time, *json).await,
        WindowCommand::Export { ics: _, output } => {
            calendar::export_ics(&client, output.as_deref()).await
        }
    }
}

fn format_window(w: &WindowStatus) -> String {
    let mut lines = vec![w.summary.clone()];
    if let Some(open) = &w.open {
        lines.push(format!(
            "  open: {} window until {}",
            open.kind,
            when(open.closes_at)
        ));
    }
    if let Some(next) = &w.next {
        lines.push(format!(
            "  next: {} window opens {}",
            next.kind,
            when(next.opens_at)
        ));
    }
    if let Some(f) = &w.freeze {
        lines.push(format!(
            "  freeze: {} from {} until {}",
            f.name,
            when(f.starts_at),
            when(f.ends_at)
        ));
    }
    if let Some(p) = &w.pause {
        lines.push(format!(
            "  paused: {} (by {} since {})",
            p.reason,
            p.paused_by,
            when(p.paused_at)
        ));
    }
    lines.push(format!("  server time: {}", when(w.now)));
    lines.join("\n")
}
