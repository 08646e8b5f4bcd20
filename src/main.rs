use clap::Parser;
use commandbridge::cli::{Cli, Command};
use commandbridge::commands::{scripting, server_admin};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let _ = color_eyre::config::HookBuilder::default()
        .display_env_section(false)
        .install();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Some(Command::Serve(args)) => server_admin::serve(args).await,
            Some(Command::User(cmd)) => server_admin::user(cmd).await,
            Some(Command::Audit(cmd)) => server_admin::audit(cmd).await,
            Some(Command::Login(args)) => scripting::login(args).await,
            Some(Command::Change(cmd)) => scripting::change(cmd).await,
            Some(Command::Window(cmd)) => scripting::window(cmd).await,
            Some(Command::Incident(cmd)) => scripting::incident(cmd).await,
            None => Err(color_eyre::eyre::eyre!(
                "the dashboard is not built yet: use the subcommands (commandbridge --help)"
            )),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
