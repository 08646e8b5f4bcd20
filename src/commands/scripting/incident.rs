//! `commandbridge incident …`: declare, close and list incidents; an incident can be named by
//! its INC ticket or its id. Separate from the change commands because incidents have their own
//! lifecycle (an open P1/P2 incident is what opens the emergency path past windows and freezes).

use super::{connect, emit, when};
use crate::cli::IncidentCommand;
use crate::domain::api::IncidentRequest;
use crate::domain::incident::{Incident, Priority};
use color_eyre::eyre::{Result, eyre};

/// `commandbridge incident …`.
pub async fn incident(cmd: &IncidentCommand) -> Result<()> {
    match cmd {
        IncidentCommand::Declare {
            priority,
            title,
            commander,
            json,
        } => {
            // Checked before connecting, so a typo is reported as one even when offline.
            let priority: Priority = priority.parse().map_err(|e: String| eyre!(e))?;
            let client = connect()?;
            let req = IncidentRequest {
                priority,
                title: title.clone(),
                commander: commander.clone(),
            };
            let incident = client.declare_incident(&req).await?;
            emit(*json, &incident, format_incident)
        }
        IncidentCommand::Close { incident, json } => {
            let client = connect()?;
            let id = match incident.parse::<i64>() {
                Ok(id) => id,
                Err(_) => client
                    .incidents()
                    .await?
                    .into_iter()
                    .find(|i| i.ticket == *incident)
                    .map(|i| i.id)
                    .ok_or_else(|| eyre!("no incident {incident}: give its INC ticket or id"))?,
            };
            let closed = client.close_incident(id).await?;
            emit(*json, &closed, format_incident)
        }
        IncidentCommand::List { json } => {
            let client = connect()?;
            let incidents = client.incidents().await?;
            emit(*json, &incidents, |list| {
                if list.is_empty() {
                    "no incidents".to_string()
                } else {
                    list.iter()
                        .map(format_incident)
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            })
        }
    }
}

fn format_incident(i: &Incident) -> String {
    let state = match i.closed_at {
        Some(t) => format!("closed {}", when(t)),
        None => "open".to_string(),
    };
    format!(
        "{}  {}  {}  {}  commander={}  declared by {} at {}",
        i.ticket,
        i.priority,
        state,
        i.title,
        i.commander,
        i.declared_by,
        when(i.declared_at)
    )
}
