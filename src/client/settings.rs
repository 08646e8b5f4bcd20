//! The client's own settings: which server to talk to and with which token, plus the TUI's
//! preferences. One TOML file, `config.toml`, in the platform's config directory (or in
//! `CB_CONFIG_DIR`), written by `commandbridge login` with mode 0600 because it holds a token.
//!
//! A bad entry never stops the client: it is ignored and reported as a warning that names it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "config.toml";
/// Overrides the directory `config.toml` lives in (tests, several identities side by side).
pub const CONFIG_DIR_ENV: &str = "CB_CONFIG_DIR";
pub const SERVER_ENV: &str = "CB_SERVER";
pub const TOKEN_ENV: &str = "CB_TOKEN";
/// A PEM file of CA certificates trusted for an https server, besides the system's roots.
pub const CA_FILE_ENV: &str = "CB_CA_FILE";

const KNOWN_KEYS: &str = "server, token, ca_file, theme, mouse, read_only, [keys]";

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

/// Reads `config.toml`. Never fails: a missing file gives the defaults, and anything wrong in
/// it is skipped and described in the returned warnings.
pub fn load() -> (Settings, Vec<String>) {
    match config_path() {
        Ok(path) => load_from(&path),
        // Without a config dir, CB_SERVER/CB_TOKEN may still do; `resolve` explains otherwise.
        Err(_) => (Settings::default(), Vec::new()),
    }
}

/// [`load`], from an explicit file.
pub fn load_from(path: &Path) -> (Settings, Vec<String>) {
    let mut warnings = Vec::new();
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (Settings::default(), warnings),
        Err(e) => {
            warnings.push(format!(
                "{}: cannot read it ({e}); ignoring it",
                path.display()
            ));
            return (Settings::default(), warnings);
        }
    };
    let settings = parse(&text, &path.display().to_string(), &mut warnings);
    if settings.token.is_some()
        && let Ok(meta) = fs::metadata(path)
    {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "{} holds a token but others may read it (mode {mode:04o}); run chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
    }
    (settings, warnings)
}

fn parse(text: &str, origin: &str, warnings: &mut Vec<String>) -> Settings {
    let table: toml::Table = match toml::from_str(text) {
        Ok(table) => table,
        Err(e) => {
            warnings.push(format!(
                "{origin}: not valid TOML, ignoring the whole file: {}",
                e.to_string().trim_end()
            ));
            return Settings::default();
        }
    };
    let mut settings = Settings::default();
    for (key, value) in table {
        match key.as_str() {
            "server" => settings.server = string_setting(origin, &key, value, warnings),
            "token" => settings.token = string_setting(origin, &key, value, warnings),
            "ca_file" => settings.ca_file = string_setting(origin, &key, value, warnings),
            "theme" => settings.theme = string_setting(origin, &key, value, warnings),
            "mouse" => settings.mouse = switch_setting(origin, &key, value, warnings),
            // A wall screen's owner meant it on: a value that is not a switch errs on the safe
            // side, read-only, and says so.
            "read_only" => match value {
                toml::Value::Boolean(on) => settings.read_only = Some(on),
                other => {
                    warnings.push(format!(
                        "{origin}: 'read_only' must be true or false, not a {}; read-only to be \
                         safe",
                        other.type_str()
                    ));
                    settings.read_only = Some(true);
                }
            },
            "keys" => match value {
                toml::Value::Table(keys) => settings.keys = keys.into_iter().collect(),
                other => warnings.push(format!(
                    "{origin}: 'keys' must be a table ([keys]), not a {}; ignored",
                    other.type_str()
                )),
            },
            _ => warnings.push(format!(
                "{origin}: unknown key '{key}' ignored (known: {KNOWN_KEYS})"
            )),
        }
    }
    settings
}

/// A `true`/`false` entry; anything else is named in a warning and ignored.
fn switch_setting(
    origin: &str,
    key: &str,
    value: toml::Value,
    warnings: &mut Vec<String>,
) -> Option<bool> {
    match value {
        toml::Value::Boolean(on) => Some(on),
        other => {
            warnings.push(format!(
                "{origin}: '{key}' must be true or false, not a {}; ignored",
                other.type_str()
            ));
            None
        }
    }
}

fn string_setting(
    origin: &str,
    key: &str,
    value: toml::Value,
    warnings: &mut Vec<String>,
) -> Option<String> {
    match value {
        toml::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        toml::Value::String(_) => {
            warnings.push(format!("{origin}: '{key}' is empty; ignored"));
            None
        }
        other => {
            warnings.push(format!(
                "{origin}: '{key}' must be a string, not a {}; ignored",
                other.type_str()
            ));
            None
        }
    }
}

/// Stores the server and token (and the CA file, when one was given) in `config.toml` (mode
/// 0600), keeping whatever else the file holds. Returns the file's path and what had to be fixed
/// on the way (for a warning).
pub fn save_login(
    server: &str,
    token: &str,
    ca_file: Option<&Path>,
) -> Result<(PathBuf, Option<String>), SettingsError> {
    let path = config_path()?;
    let fixed = save_login_to(&path, server, token, ca_file)?;
    Ok((path, fixed))
}

/// [`save_login`], to an explicit file.
///
/// The token must end up in this file and nowhere else: the directory is the user's own and
/// writable by no one else (fixed to 0700 if it was), a `config.toml` that is a symbolic link is
/// refused rather than followed, and the new contents go to a temporary file with a random name,
/// created exclusively with mode 0600, that is renamed over `config.toml`, so a crash never
/// leaves half a config and a link planted under a predictable name is never written through.
pub fn save_login_to(
    path: &Path,
    server: &str,
    token: &str,
    ca_file: Option<&Path>,
) -> Result<Option<String>, SettingsError> {
    let io_err = |path: &Path, err: io::Error| SettingsError::Io {
        path: path.to_path_buf(),
        err,
    };
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    let fixed = crate::private_fs::ensure_private_dir(dir).map_err(|e| io_err(dir, e))?;
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(SettingsError::Invalid {
                path: path.to_path_buf(),
                message: "is a symbolic link; the token is never written through one. Remove the \
                          link (or put the file it points to in its place) and log in again"
                    .into(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path, e)),
    }
    let mut table = match fs::read_to_string(path) {
        Ok(text) => toml::from_str::<toml::Table>(&text).map_err(|e| SettingsError::Invalid {
            path: path.to_path_buf(),
            // Overwriting would lose the theme and keys the user wrote; let them decide.
            message: format!(
                "not valid TOML, so it was left alone; fix or remove it and log in again: {}",
                e.to_string().trim_end()
            ),
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(io_err(path, e)),
    };
    table.insert("server".into(), toml::Value::String(server.trim().into()));
    table.insert("token".into(), toml::Value::String(token.trim().into()));
    if let Some(ca) = ca_file {
        // Absolute, so the dashboard finds it from any working directory.
        let ca = std::path::absolute(ca).map_err(|e| io_err(ca, e))?;
        table.insert(
            "ca_file".into(),
            toml::Value::String(ca.display().to_string()),
        );
    }
    let text = toml::to_string(&table).map_err(|e| SettingsError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;

    // tempfile opens with O_CREAT|O_EXCL and mode 0600 under a random name.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_err(dir, e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_err(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| io_err(path, e.error))?;
    Ok(fixed)
}

/// The server and token to use: `CB_SERVER` and `CB_TOKEN` win over `config.toml`, each on its
/// own. Also returns the warnings from reading the file.
pub fn resolve() -> Result<(Credentials, Vec<String>), SettingsError> {
    let (file, warnings) = load();
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

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("exists").permissions().mode() & 0o777
    }

    #[test]
    fn save_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join(FILE_NAME);
        save_login_to(&path, "http://127.0.0.1:7878", "tok-1", None).expect("saved");
        assert_eq!(mode(&path), 0o600);
        let (s, warnings) = load_from(&path);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(s.server.as_deref(), Some("http://127.0.0.1:7878"));
        assert_eq!(s.token.as_deref(), Some("tok-1"));
        let left: Vec<_> = fs::read_dir(path.parent().expect("a dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, [FILE_NAME], "no temporary file is left behind");
    }

    #[test]
    fn saving_over_a_world_readable_file_makes_it_private_and_keeps_other_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        fs::write(
            &path,
            "server = \"http://old\"\ntheme = \"mono\"\n[keys]\napprove = \"a\"\n",
        )
        .expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        save_login_to(&path, "http://new:1", "tok-2", None).expect("saved");
        assert_eq!(mode(&path), 0o600);
        let (s, warnings) = load_from(&path);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(s.server.as_deref(), Some("http://new:1"));
        assert_eq!(s.theme.as_deref(), Some("mono"));
        assert_eq!(s.keys.get("approve").and_then(|v| v.as_str()), Some("a"));
    }

    #[test]
    fn saving_refuses_to_clobber_a_broken_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "theme = [unclosed\n").expect("write");
        let err = save_login_to(&path, "http://x:1", "t", None).expect_err("broken file");
        assert!(err.to_string().contains("fix or remove it"), "{err}");
        assert_eq!(
            fs::read_to_string(&path).expect("still there"),
            "theme = [unclosed\n"
        );
    }

    #[test]
    fn unknown_and_mistyped_keys_are_warnings_that_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        fs::write(
            &path,
            "server = \"http://h:1\"\ncolour = \"red\"\ntheme = 3\nkeys = \"x\"\n",
        )
        .expect("write");
        let (s, warnings) = load_from(&path);
        assert_eq!(s.server.as_deref(), Some("http://h:1"));
        assert_eq!(s.theme, None);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("unknown key 'colour'")));
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("'theme' must be a string"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("'keys' must be a table"))
        );
    }

    #[test]
    fn read_only_is_a_switch_and_a_bad_value_errs_on_the_safe_side() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        fs::write(&path, "read_only = true\n").expect("write");
        let (s, warnings) = load_from(&path);
        assert_eq!((s.read_only, warnings.len()), (Some(true), 0));
        fs::write(&path, "read_only = \"yes\"\n").expect("write");
        let (s, warnings) = load_from(&path);
        assert_eq!(s.read_only, Some(true));
        assert!(
            warnings[0].contains("'read_only' must be true or false"),
            "{warnings:?}"
        );
    }

    #[test]
    fn mouse_is_a_switch_and_anything_else_is_named_in_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "mouse = false\n").expect("write");
        let (s, warnings) = load_from(&path);
        assert_eq!((s.mouse, warnings.len()), (Some(false), 0));
        fs::write(&path, "mouse = \"off\"\n").expect("write");
        let (s, warnings) = load_from(&path);
        assert_eq!(s.mouse, None);
        assert!(
            warnings[0].contains("'mouse' must be true or false"),
            "{warnings:?}"
        );
    }

    #[test]
    fn invalid_toml_falls_back_to_defaults_with_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "server = \n").expect("write");
        let (s, warnings) = load_from(&path);
        assert_eq!(s, Settings::default());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("not valid TOML"), "{warnings:?}");
    }

    #[test]
    fn a_missing_file_is_not_a_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, warnings) = load_from(&dir.path().join(FILE_NAME));
        assert_eq!(s, Settings::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_readable_token_file_is_warned_about() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "server = \"http://h:1\"\ntoken = \"t\"\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let (_, warnings) = load_from(&path);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("chmod 600"));
    }

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
    fn the_ca_file_comes_from_the_environment_or_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        save_login_to(&path, "https://h:1", "t", Some(Path::new("ca.pem"))).expect("saved");
        let (file, warnings) = load_from(&path);
        assert!(warnings.is_empty(), "{warnings:?}");
        let saved = PathBuf::from(file.ca_file.clone().expect("ca_file saved"));
        assert!(
            saved.is_absolute() && saved.ends_with("ca.pem"),
            "{saved:?}"
        );
        let from_file = resolve_from(&file, None, None, None, "f").expect("ok");
        assert_eq!(from_file.ca_file, Some(saved));
        let from_env =
            resolve_from(&file, None, None, Some("/etc/pki/ca.pem".into()), "f").expect("ok");
        assert_eq!(from_env.ca_file, Some(PathBuf::from("/etc/pki/ca.pem")));
        // Logging in again without a CA file keeps the one saved before.
        save_login_to(&path, "https://h:1", "t2", None).expect("saved");
        assert!(load_from(&path).0.ca_file.is_some());
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
