//! `commandbridge change …`: request, preview, list, show, approve, deny, cancel and roll back
//! changes. Besides the calls, this room turns `-p NAME=VALUE` arguments into a request's params
//! and decides when a change the call drove to failure or refusal is an error for scripts; how a
//! change reads for people is in `change_format`.

use super::change_format::{format_change, format_change_list, format_preview};
use super::{connect, emit};
use crate::cli::{ChangeCommand, ChangeSpecArgs};
use crate::domain::api::{
    ApproveRequest, CancelRequest, ChangeRequest, DenyRequest, RollbackRequest, WithdrawRequest,
};
use crate::domain::change::{Change, ChangeState};
use color_eyre::eyre::{Result, bail, eyre};
use std::collections::BTreeMap;

/// `commandbridge change …`.
pub async fn change(cmd: &ChangeCommand) -> Result<()> {
    let client = connect()?;
    match cmd {
        ChangeCommand::Create {
            spec,
            idempotency_key,
            json,
        } => {
            let req = change_request(spec)?;
            let change = client
                .create_change(&req, idempotency_key.as_deref())
                .await?;
            emit(*json, &change, format_change)?;
            settled(&change)
        }
        ChangeCommand::Preview { spec, json } => {
            let req = change_request(spec)?;
            let preview = client.preview(&req).await?;
            emit(*json, &preview, |p| format_preview(&req, p))
        }
        ChangeCommand::List {
            state,
            limit,
            before,
            json,
        } => {
            let state = state
                .as_deref()
                .map(str::parse::<ChangeState>)
                .transpose()
                .map_err(|e| eyre!(e))?;
            let page = client
                .changes_following(state, *before, Some(*limit as usize))
                .await?;
            emit(*json, &page.items, |c| format_change_list(c))?;
            if let Some(next) = page.next_before {
                // On stderr, so `--json` output stays one document.
                eprintln!("more changes: --before {next}");
            }
            Ok(())
        }
        ChangeCommand::Show { id, json } => {
            let change = client.change(*id).await?;
            emit(*json, &change, format_change)
        }
        ChangeCommand::Approve { id, comment, json } => {
            let req = ApproveRequest {
                comment: comment.clone(),
            };
            let change = client.approve(*id, &req).await?;
            emit(*json, &change, format_change)?;
            settled(&change)
        }
        ChangeCommand::Deny { id, reason, json } => {
            let req = DenyRequest {
                reason: reason.clone(),
            };
            let change = client.deny(*id, &req).await?;
            emit(*json, &change, format_change)
        }
        ChangeCommand::Withdraw { id, reason, json } => {
            let req = WithdrawRequest {
                reason: reason.clone(),
            };
            let change = client.withdraw(*id, &req).await?;
            emit(*json, &change, format_change)
        }
        ChangeCommand::Cancel { id, reason, json } => {
            let req = CancelRequest {
                reason: reason.clone(),
            };
            let change = client.cancel(*id, &req).await?;
            emit(*json, &change, format_change)
        }
        ChangeCommand::Rollback {
            id,
            reason,
            ticket,
            json,
        } => {
            let req = RollbackRequest {
                reason: reason.clone(),
                ticket: ticket.clone(),
            };
            let change = client.rollback(*id, &req).await?;
            emit(*json, &change, format_change)?;
            settled(&change)
        }
    }
}

/// Parses `-p NAME=VALUE` arguments. A value written as a plain integer (`3`, `-2`) is sent as
/// a JSON number, anything else as a string.
pub fn parse_params(args: &[String]) -> Result<BTreeMap<String, serde_json::Value>> {
    let mut params = BTreeMap::new();
    for arg in args {
        let Some((name, value)) = arg.split_once('=') else {
            bail!("bad parameter '{arg}': write it as NAME=VALUE, e.g. -p replicas=3");
        };
        let name = name.trim();
        if name.is_empty() {
            bail!("bad parameter '{arg}': the name before '=' is empty");
        }
        let value = match value.parse::<i64>() {
            // Only when the number prints back as written: `007` or `+5` may be an identifier,
            // and the server would store the number's digits, not what was typed.
            Ok(n) if n.to_string() == value => serde_json::Value::from(n),
            _ => serde_json::Value::String(value.to_string()),
        };
        if params.insert(name.to_string(), value).is_some() {
            bail!("parameter '{name}' is given more than once");
        }
    }
    Ok(params)
}

fn change_request(spec: &ChangeSpecArgs) -> Result<ChangeRequest> {
    Ok(ChangeRequest {
        action: spec.action.clone(),
        ticket: spec.ticket.clone(),
        target: spec.target.clone(),
        params: parse_params(&spec.params)?,
        reason: spec.reason.clone(),
        // `next-window` and `next_window` both name the next window; the server checks a time.
        run_at: spec.at.clone(),
    })
}

/// A change the call itself drove to failure or refusal is an error for scripts: the request
/// was accepted, but what it asked for did not happen.
fn settled(change: &Change) -> Result<()> {
    match change.state {
        ChangeState::Failed => {
            let how = change
                .output
                .as_ref()
                .and_then(|o| o.exit_code)
                .map(|code| format!("exit code {code}"))
                .or_else(|| change.outcome_reason.clone())
                .unwrap_or_else(|| "see its output".to_string());
            bail!("change #{} ran and failed ({how})", change.id)
        }
        ChangeState::Refused
        | ChangeState::Denied
        | ChangeState::Expired
        | ChangeState::Withdrawn
        | ChangeState::Missed
        | ChangeState::Cancelled => bail!(
            "change #{} was {}: {}",
            change.id,
            change.state,
            change
                .outcome_reason
                .as_deref()
                .unwrap_or("no reason given")
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::scripting::fixtures::{change, t};
    use crate::domain::change::ExecutionOutput;
    use serde_json::json;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn params_become_numbers_only_when_they_are_plain_integers() {
        let p = parse_params(&args(&[
            "replicas=3",
            "delta=-2",
            "ip=203.0.113.7",
            "code=007",
            "plus=+5",
            "note=a=b",
            "empty=",
            "big=99999999999999999999",
        ]))
        .expect("valid");
        assert_eq!(p["replicas"], json!(3));
        assert_eq!(p["delta"], json!(-2));
        assert_eq!(p["ip"], json!("203.0.113.7"));
        assert_eq!(p["code"], json!("007"));
        assert_eq!(p["plus"], json!("+5"));
        assert_eq!(p["note"], json!("a=b"));
        assert_eq!(p["empty"], json!(""));
        assert_eq!(p["big"], json!("99999999999999999999"));
    }

    #[test]
    fn a_param_without_equals_is_an_error_naming_it() {
        let err = parse_params(&args(&["replicas=3", "replicas3"])).expect_err("no '='");
        let text = err.to_string();
        assert!(text.contains("'replicas3'"), "{text}");
        assert!(text.contains("NAME=VALUE"), "{text}");
    }

    #[test]
    fn a_param_without_name_or_given_twice_is_an_error() {
        let err = parse_params(&args(&["=3"])).expect_err("no name");
        assert!(err.to_string().contains("'=3'"), "{err}");
        let err = parse_params(&args(&["n=1", "n=2"])).expect_err("twice");
        assert!(err.to_string().contains("'n'"), "{err}");
    }

    #[test]
    fn no_params_is_an_empty_map() {
        assert!(parse_params(&[]).expect("valid").is_empty());
    }

    #[test]
    fn a_failed_or_refused_change_is_an_error_for_scripts() {
        assert!(settled(&change(1, ChangeState::Executed)).is_ok());
        assert!(settled(&change(1, ChangeState::PendingApproval)).is_ok());
        let mut refused = change(2, ChangeState::Refused);
        refused.outcome_reason = Some("the standard window closed".into());
        let err = settled(&refused).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "change #2 was refused: the standard window closed"
        );
        let mut failed = change(3, ChangeState::Failed);
        failed.output = Some(ExecutionOutput {
            exit_code: Some(2),
            stdout: String::new(),
            stderr: "boom".into(),
            truncated: false,
            simulated: false,
            started_at: t(10, 0),
            finished_at: t(10, 1),
        });
        assert_eq!(
            settled(&failed).expect_err("failed").to_string(),
            "change #3 ran and failed (exit code 2)"
        );
    }
}
