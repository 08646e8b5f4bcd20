//! Reading `config.toml`, which forgives the file's contents: a missing file gives the defaults,
//! a file that is not TOML is ignored whole, and each bad entry is skipped, all with a warning
//! that names the file and the key (and a token others may read is warned about too). What it
//! does not forgive is a file someone else could have written: it names the server the token is
//! sent to and the CA trusted for it. Kept apart from writing the file because the two have
//! different rules: reading forgives mistakes, saving refuses anything doubtful.

use super::{Settings, SettingsError, config_path};
use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const KNOWN_KEYS: &str = "server, token, ca_file, theme, mouse, read_only, [keys]";

/// Reads `config.toml`: a missing file gives the defaults, and anything wrong in it is skipped
/// and described in the returned warnings. Fails only when the file or its directory could have
/// been written by another user ([`SettingsError::Untrusted`]).
pub fn load() -> Result<(Settings, Vec<String>), SettingsError> {
    match config_path() {
        Ok(path) => load_from(&path),
        // Without a config dir, CB_SERVER/CB_TOKEN may still do; `resolve` explains otherwise.
        Err(_) => Ok((Settings::default(), Vec::new())),
    }
}

/// [`load`], from an explicit file.
pub fn load_from(path: &Path) -> Result<(Settings, Vec<String>), SettingsError> {
    let mut warnings = Vec::new();
    let (text, mode) = match read_trusted(path) {
        Ok(Some(read)) => read,
        Ok(None) => return Ok((Settings::default(), warnings)),
        Err(ReadError::Untrusted(e)) => return Err(e),
        Err(ReadError::Io(e)) => {
            warnings.push(format!(
                "{}: cannot read it ({e}); ignoring it",
                path.display()
            ));
            return Ok((Settings::default(), warnings));
        }
    };
    let settings = parse(&text, &path.display().to_string(), &mut warnings);
    if settings.token.is_some() && mode & 0o077 != 0 {
        warnings.push(format!(
            "{} holds a token but others may read it (mode {mode:04o}); run chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    Ok((settings, warnings))
}

pub(super) enum ReadError {
    Untrusted(SettingsError),
    Io(io::Error),
}

/// The text of `path` and its mode, or `None` if there is no such file; refused if the file or
/// its directory belongs to another user or others may write to it. The file is checked
/// through the handle it is read from, so it cannot be swapped between the check and the read.
pub(super) fn read_trusted(path: &Path) -> Result<Option<(String, u32)>, ReadError> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let untrusted = |at: &Path, why: String, mode: &'static str| {
        ReadError::Untrusted(SettingsError::Untrusted {
            path: at.to_path_buf(),
            why,
            mode,
        })
    };
    let dir_meta = fs::metadata(dir).map_err(ReadError::Io)?;
    if let Some(why) = crate::private_fs::written_by_others(&dir_meta) {
        return Err(untrusted(dir, why, "700"));
    }
    let meta = file.metadata().map_err(ReadError::Io)?;
    if let Some(why) = crate::private_fs::written_by_others(&meta) {
        return Err(untrusted(path, why, "600"));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(ReadError::Io)?;
    Ok(Some((text, meta.permissions().mode() & 0o777)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::settings::FILE_NAME;

    #[test]
    fn unknown_and_mistyped_keys_are_warnings_that_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        fs::write(
            &path,
            "server = \"http://h:1\"\ncolour = \"red\"\ntheme = 3\nkeys = \"x\"\n",
        )
        .expect("write");
        let (s, warnings) = load_from(&path).expect("trusted");
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
        let (s, warnings) = load_from(&path).expect("trusted");
        assert_eq!((s.read_only, warnings.len()), (Some(true), 0));
        fs::write(&path, "read_only = \"yes\"\n").expect("write");
        let (s, warnings) = load_from(&path).expect("trusted");
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
        let (s, warnings) = load_from(&path).expect("trusted");
        assert_eq!((s.mouse, warnings.len()), (Some(false), 0));
        fs::write(&path, "mouse = \"off\"\n").expect("write");
        let (s, warnings) = load_from(&path).expect("trusted");
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
        let (s, warnings) = load_from(&path).expect("trusted");
        assert_eq!(s, Settings::default());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("not valid TOML"), "{warnings:?}");
    }

    #[test]
    fn a_missing_file_is_not_a_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, warnings) = load_from(&dir.path().join(FILE_NAME)).expect("no file");
        assert_eq!(s, Settings::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_readable_token_file_is_warned_about() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "server = \"http://h:1\"\ntoken = \"t\"\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let (_, warnings) = load_from(&path).expect("trusted");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("chmod 600"));
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A private directory with a `config.toml` naming a server, as `login` leaves them.
    fn saved() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        chmod(dir.path(), 0o700);
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "server = \"http://h:1\"\n").expect("write");
        chmod(&path, 0o600);
        (dir, path)
    }

    fn refusal(path: &Path) -> String {
        match load_from(path) {
            Err(e @ SettingsError::Untrusted { .. }) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_file_of_ones_own_is_read() {
        let (_dir, path) = saved();
        let (s, warnings) = load_from(&path).expect("trusted");
        assert_eq!(s.server.as_deref(), Some("http://h:1"));
        assert!(warnings.is_empty(), "{warnings:?}");
        // Readable by others is a leak, not a forgery: read, with the existing warning.
        chmod(&path, 0o644);
        assert!(load_from(&path).is_ok());
    }

    #[test]
    fn a_file_others_may_write_is_refused_naming_it_and_the_fix() {
        let (_dir, path) = saved();
        for mode in [0o666, 0o620] {
            chmod(&path, mode);
            let text = refusal(&path);
            assert!(
                text.starts_with(&format!("{}: it may be written", path.display())),
                "{text}"
            );
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            assert!(text.contains("CB_CONFIG_DIR"), "{text}");
        }
    }

    #[test]
    fn a_directory_others_may_write_is_refused_naming_it() {
        let (dir, path) = saved();
        for mode in [0o777, 0o770, 0o1777] {
            chmod(dir.path(), mode);
            let text = refusal(&path);
            assert!(
                text.starts_with(&format!("{}: it may be written", dir.path().display())),
                "{text}"
            );
            assert!(
                text.contains(&format!("chmod 700 {}", dir.path().display())),
                "{text}"
            );
        }
        // With no file there, nothing is read, so nothing is refused.
        fs::remove_file(&path).expect("rm");
        assert_eq!(load_from(&path).expect("no file").0, Settings::default());
    }

    /// Needs root, to give the file and the directory to `nobody`; skipped otherwise.
    #[test]
    fn what_another_user_owns_is_refused() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: only root can give a file to another user");
            return;
        }
        let nobody = 65534;
        let (dir, path) = saved();
        std::os::unix::fs::chown(&path, Some(nobody), Some(nobody)).expect("chown");
        let text = refusal(&path);
        assert!(
            text.starts_with(&format!(
                "{}: it belongs to user id 65534, not to you (user id 0)",
                path.display()
            )),
            "{text}"
        );
        std::os::unix::fs::chown(&path, Some(0), Some(0)).expect("chown back");
        assert!(load_from(&path).is_ok(), "root reads its own file");
        std::os::unix::fs::chown(dir.path(), Some(nobody), Some(nobody)).expect("chown dir");
        let text = refusal(&path);
        assert!(
            text.starts_with(&format!(
                "{}: it belongs to user id 65534",
                dir.path().display()
            )),
            "{text}"
        );
    }
}
