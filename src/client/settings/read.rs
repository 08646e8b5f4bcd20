//! Reading `config.toml`, which never fails: a missing file gives the defaults, a file that is
//! not TOML is ignored whole, and each bad entry is skipped, all with a warning that names the
//! file and the key (and a token others may read is warned about too). Kept apart from writing
//! the file because the two have opposite rules: reading forgives everything, saving refuses
//! anything doubtful.

use super::{Settings, config_path};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const KNOWN_KEYS: &str = "server, token, ca_file, theme, mouse, read_only, [keys]";

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
}
