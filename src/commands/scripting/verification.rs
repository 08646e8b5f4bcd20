//! `commandbridge verification …`: list and show the post-change verification clocks with their
//! samples, and record the human verdict (verified, or escalated to an incident). Its own room
//! because its output is about checks and deadlines, not about the change's request.

use super::{connect, emit};
use crate::cli::VerificationCommand;
use crate::domain::api::{OutcomeKind, OutcomeRequest};
use crate::domain::incident::Priority;
use color_eyre::eyre::{Result, eyre};

/// `commandbridge verification …`.
pub async fn verification(cmd: &VerificationCommand) -> Result<()> {
    let outcome = |outcome,
                   note: &Option<String>,
                   priority: Option<Priority>,
                   commander: &Option<String>| OutcomeRequest {
        outcome,
        note: note.clone(),
        priority,
        commander: commander.clone(),
    };
    match cmd {
        VerificationCommand::List { active, json } => {
            let client = connect()?;
            let mut list = client.verifications().await?;
            if *active {
                list.retain(|v| v.state.is_active());
            }
            emit(*json, &list, |l| {
                if l.is_empty() {
                    "no verifications".to_string()
                } else {
                    l.iter()
                        .map(format_verification)
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            })
        }
        VerificationCommand::Show { id, json } => {
            let client = connect()?;
            let detail = client.verification(*id).await?;
            emit(*json, &detail, |d| {
                let mut out = format_verification(&d.verification);
                for s in &d.samples {
                    out.push_str(&format!(
                        "\n  {} {}",
                        s.at.format("%H:%M:%S"),
                        if s.ok() { "ok" } else { "FAILING" }
                    ));
                    if let Some(h) = &s.health {
                        out.push_str(&format!("  health {}", h.detail));
                    }
                    if let Some(r) = &s.error_rate {
                        out.push_str(&format!("  error rate {}", r.detail));
                    }
                }
                out
            })
        }
        VerificationCommand::Verified { id, note, json } => {
            let client = connect()?;
            let v = client
                .verification_outcome(*id, &outcome(OutcomeKind::Verified, note, None, &None))
                .await?;
            emit(*json, &v, format_verification)
        }
        VerificationCommand::Escalate {
            id,
            note,
            priority,
            commander,
            json,
        } => {
            let priority = priority
                .as_deref()
                .map(str::parse::<Priority>)
                .transpose()
                .map_err(|e| eyre!(e))?;
            let client = connect()?;
            let v = client
                .verification_outcome(
                    *id,
                    &outcome(OutcomeKind::Escalated, note, priority, commander),
                )
                .await?;
            emit(*json, &v, format_verification)
        }
    }
}

fn format_verification(v: &crate::domain::verification::Verification) -> String {
    let mut line = format!(
        "#{} {:<17} change #{} {} on {}  deadline {}",
        v.id,
        v.state.as_str(),
        v.change_id,
        v.action,
        v.target,
        v.deadline.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if !v.health_checked && !v.error_rate_checked {
        line.push_str("  (no checks configured)");
    }
    if let Some(s) = &v.summary {
        line.push_str(&format!("\n  summary: {}", s.text));
    }
    if let Some(i) = &v.incident {
        line.push_str(&format!("\n  incident: {i}"));
    }
    line
}
