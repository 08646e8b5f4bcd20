//! The client's own settings: which server to talk to and with which token, plus the TUI's
//! preferences. One TOML file, `config.toml`, in the platform's config directory (or in
//! `CB_CONFIG_DIR`), written by `commandbridge login` with mode 0600 because it holds a token.
//!
//! A bad entry never stops the client: it is ignored and reported as a warning that names it.
//! A file another user could have written does: it would choose the server the token goes to.
//!
//! This room holds what the file means and where it is: the [`Settings`] it holds, the
//! [`Credentials`] a command uses once the environment has had its say, and the errors. Reading
//! the file forgivingly (`read`) and writing a token into it safely (`save`) are rooms of their
//! own: one must never fail, the other must never leak, and each is easier to review alone.

mod read;
mod save;

pub use read::{load, load_from};
pub use save::{save_login, save_login_to};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;

pub const FILE_NAME: &str = "config.toml";
/// Overrides the directory `config.toml` lives in (tests, several identities side by side).
pub const CONFIG_DIR_ENV: &str = "CB_CONFIG_DIR";
pub const SERVER_ENV: &str = "CB_SERVER";
pub const TOKEN_ENV: &str = "CB_TOKEN";
/// A PEM file of CA certificates trusted for an https server, besides the system's roots.
pub const CA_FILE_ENV: &str = "CB_CA_FILE";

/// What `config.toml` says. Every field is optional: environment variables can stand in.
#[derive(Clone, Default, PartialEq)]
pub struct Settings {
    pub server: Option<String>,
    pub token: Option<String>,
    /// Extra CA certificates (PEM) for an https server with a private CA.
    pub ca_file: Option<String>,
    /// Name of the TUI colour theme.
    pub theme: Option<String>,
    /// `mouse = false` leaves the mouse to the terminal (the dashboard captures it by default).
    pub mouse: Option<bool>,
    /// `read_only = true`: the dashboard acts on nothing (as `--read-only`), e.g. a wall screen.
    pub read_only: Option<bool>,
    /// The `[keys]` table, as written; the TUI's keymap interprets and validates it.
    pub keys: BTreeMap<String, toml::Value>,
}

impl fmt::Debug for Settings {
    // The token is a credential: keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("theme", &self.theme)
            .field("mouse", &self.mouse)
            .field("read_only", &self.read_only)
            .field("keys", &self.keys)
            .finish()
    }
}

/// The server and token to use, after the environment has had its say.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub server: String,
    pub token: String,
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("token", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "cannot tell where to keep the client settings (no home directory); set {CONFIG_DIR_ENV} \
         to a directory"
    )]
    NoConfigDir,
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{}: it {why}, so another user could point the client (and the token it sends) at a \
         server of theirs; it was not read. Make it yours and private (`chown $(id -un) {}` as \
         root, then `chmod {mode} {}`), or set {CONFIG_DIR_ENV} to a directory of your own",
        path.display(), path.display(), path.display()
    )]
    Untrusted {
        path: PathBuf,
        why: String,
        /// The mode to give it: 700 for the directory, 600 for the file.
        mode: &'static str,
    },
    #[error(
        "{missing}: run `commandbridge login --server URL` (it asks for the token), or set \
         {SERVER_ENV} and {TOKEN_ENV}, or run `commandbridge demo` to try CommandBridge locally"
    )]
    NotLoggedIn { missing: String },
}

/// The directory `config.toml` lives in.
pub fn config_dir() -> Result<PathBuf, SettingsError> {
    config_dir_from(std::env::var_os(CONFIG_DIR_ENV))
}

fn config_dir_from(override_dir: Option<OsString>) -> Result<PathBuf, SettingsError> {
    if let Some(dir) = override_dir.filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "commandbridge")
        .map(|dirs| dirs.config_dir().to_path_buf())
        .ok_or(SettingsError::NoConfigDir)
}

/// Where `config.toml` is (whether or not it exists).
pub fn config_path() -> Result<PathBuf, SettingsError> {
    Ok(config_dir()?.join(FILE_NAME))
}

/// The server and token to use: `CB_SERVER` and `CB_TOKEN` win over `config.toml`, each on its
/// own. Also returns the warnings from reading the file.
pub fn resolve() -> Result<(Credentials, Vec<String>), SettingsError> {
    let (file, warnings) = load()?;
    let env = |name: &str| std::env::var(name).ok();
    let origin = config_path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| FILE_NAME.to_string());
    let creds = resolve_from(
        &file,
        env(SERVER_ENV),
        env(TOKEN_ENV),
        env(CA_FILE_ENV),
        &origin,
    )?;
    Ok((creds, warnings))
}

/// [`resolve`], from given values; `origin` names the file in the error.
pub fn resolve_from(
    file: &Settings,
    env_server: Option<String>,
    env_token: Option<String>,
    env_ca_file: Option<String>,
    origin: &str,
) -> Result<Credentials, SettingsError> {
    let pick = |env: Option<String>, file: &Option<String>| {
        env.map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| file.clone())
    };
    let server = pick(env_server, &file.server);
    let token = pick(env_token, &file.token);
    let ca_file = pick(env_ca_file, &file.ca_file).map(PathBuf::from);
    let missing = match (server, token) {
        (Some(server), Some(token)) => {
            return Ok(Credentials {
                server,
                token,
                ca_file,
            });
        }
        (None, None) => "no server and no token configured",
        (None, Some(_)) => "no server configured",
        (Some(_), None) => "no token configured",
    };
    Err(SettingsError::NotLoggedIn {
        missing: format!("{missing} (looked at {SERVER_ENV}, {TOKEN_ENV} and {origin})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file_field_by_field() {
        let file = Settings {
            server: Some("http://file:1".into()),
            token: Some("file-token".into()),
            ..Settings::default()
        };
        let both = resolve_from(
            &file,
            Some("http://env:2".into()),
            Some("env-token".into()),
            None,
            "f",
        )
        .expect("resolved");
        assert_eq!(both.server, "http://env:2");
        assert_eq!(both.token, "env-token");

        let token_only =
            resolve_from(&file, None, Some("env-token".into()), None, "f").expect("ok");
        assert_eq!(token_only.server, "http://file:1");
        assert_eq!(token_only.token, "env-token");

        // An empty variable is as good as unset (`CB_SERVER= commandbridge …`).
        let empty = resolve_from(&file, Some(" ".into()), None, None, "f").expect("ok");
        assert_eq!(empty.server, "http://file:1");
    }

    #[test]
    fn nothing_configured_tells_how_to_log_in() {
        let err = resolve_from(&Settings::default(), None, None, None, "/x/config.toml")
            .expect_err("nothing configured");
        let text = err.to_string();
        assert!(
            text.contains("commandbridge login --server URL` (it asks for the token)"),
            "{text}"
        );
        assert!(text.contains("CB_SERVER and CB_TOKEN"), "{text}");
        assert!(text.contains("commandbridge demo"), "{text}");

        let half = resolve_from(
            &Settings::default(),
            Some("http://h:1".into()),
            None,
            None,
            "f",
        )
        .expect_err("no token");
        assert!(
            half.to_string().starts_with("no token configured"),
            "{half}"
        );
    }

    #[test]
    fn the_config_dir_override_wins() {
        assert_eq!(
            config_dir_from(Some("/tmp/cb-test".into())).expect("dir"),
            PathBuf::from("/tmp/cb-test")
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let s = Settings {
            token: Some("s3cret".into()),
            ..Settings::default()
        };
        assert!(!format!("{s:?}").contains("s3cret"));
        let c = Credentials {
            server: "http://h".into(),
            token: "s3cret".into(),
            ca_file: None,
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
