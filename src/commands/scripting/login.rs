//! `commandbridge login`: the one command that writes credentials rather than using them. It
//! checks a token against the server before saving it, and reads the token without echoing it;
//! that care for a secret on a terminal is why it is kept apart from the commands that only read
//! the saved settings.

use super::out;
use crate::cli::LoginArgs;
use crate::client::{ApiClient, settings};
use color_eyre::eyre::{Result, WrapErr, bail};
use std::io;

/// `commandbridge login`: checks the token against the server, then stores both.
pub async fn login(args: &LoginArgs) -> Result<()> {
    let token = match args.token.as_deref() {
        Some(t) if t != "-" => {
            eprintln!(
                "warning: a token on the command line shows in `ps` and the shell's history; \
                 leave --token out to type it at a prompt or pipe it in"
            );
            t.to_string()
        }
        _ => read_token()?,
    };
    // Without --ca-file (or CB_CA_FILE), the one saved by an earlier login still applies.
    let saved_ca = settings::load()?.0.ca_file.map(std::path::PathBuf::from);
    let ca_file = args.ca_file.clone().or(saved_ca);
    let client = ApiClient::with_ca_file(&args.server, &token, ca_file.as_deref())?;
    // Saving a token the server rejects would only move the failure to the next command.
    let me = client.me().await?;
    let (path, fixed) = settings::save_login(client.server(), &token, args.ca_file.as_deref())?;
    if let Some(what) = fixed {
        eprintln!("warning: {what}");
    }
    out(&format!(
        "logged in to {} as {} ({})",
        client.server(),
        me.name,
        me.level
    ))?;
    eprintln!("saved to {} (mode 0600)", path.display());
    Ok(())
}

/// The token from standard input: typed at a prompt that does not echo it when a person is at a
/// terminal, else the first line of what is piped in (`pass show cb | commandbridge login …`).
fn read_token() -> Result<String> {
    use std::io::IsTerminal;
    let token = if io::stdin().is_terminal() {
        // rpassword turns echo off on the terminal itself and restores it even on Ctrl-C;
        // crossterm's raw mode would mean re-implementing line editing and signal handling.
        rpassword::prompt_password("token: ").wrap_err("cannot read the token from the terminal")?
    } else {
        let mut line = String::new();
        io::stdin()
            .read_line(&mut line)
            .wrap_err("cannot read the token from standard input")?;
        line
    };
    let token = token.trim();
    if token.is_empty() {
        bail!(
            "no token given: type it at the prompt or pipe it on standard input (the token \
             `commandbridge user add` printed)"
        );
    }
    Ok(token.to_string())
}
