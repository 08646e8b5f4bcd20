use clap::Parser;
use commandbridge::cli::{Cli, Command};
use commandbridge::commands::{calendar, dashboard, scripting, server_admin};
use std::io::IsTerminal;
use std::process::ExitCode;

/// The dashboard owns the terminal, so its logs (and the demo server's) go to a file.
fn log_to_file() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let dirs = directories::ProjectDirs::from("", "", "commandbridge")?;
    let dir = dirs.data_dir().join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let (writer, guard) =
        tracing_appender::non_blocking(tracing_appender::rolling::daily(dir, "commandbridge.log"));
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(writer)
        .with_ansi(false)
        .init();
    Some(guard)
}

fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        // The platform verifier logs every refused certificate as an error; the client already
        // says why, with the fix, so its line would only repeat it without one.
        .unwrap_or_else(|_| "info,sqlx=warn,rustls_platform_verifier=off".into())
}

fn main() -> ExitCode {
    let _ = color_eyre::config::HookBuilder::default()
        .display_env_section(false)
        .install();
    let cli = Cli::parse();
    let owns_terminal = matches!(
        cli.command,
        None | Some(Command::Tui(_)) | Some(Command::Demo(_))
    );
    let _guard = if owns_terminal {
        log_to_file()
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
        None
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            None => dashboard::tui(&cli.dashboard).await,
            Some(Command::Tui(args)) => dashboard::tui(args).await,
            Some(Command::Demo(args)) => dashboard::demo(args).await,
            Some(Command::Serve(args)) => server_admin::serve(args).await,
            Some(Command::User(cmd)) => server_admin::user(cmd).await,
            Some(Command::Audit(cmd)) => server_admin::audit(cmd).await,
            Some(Command::Migrate(args)) => server_admin::migrate(args).await,
            Some(Command::Login(args)) => scripting::login(args).await,
            Some(Command::Change(cmd)) => scripting::change(cmd).await,
            Some(Command::Window(cmd)) => scripting::window(cmd).await,
            Some(Command::Calendar(cmd)) => calendar::calendar(cmd).await,
            Some(Command::Incident(cmd)) => scripting::incident(cmd).await,
            Some(Command::Verification(cmd)) => scripting::verification(cmd).await,
        }
    });
    // Background tasks (a stream, a command) must not keep a quitting process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The message is often the server's own words, which may quote what someone typed.
            eprintln!("error: {}", scripting::printable(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
