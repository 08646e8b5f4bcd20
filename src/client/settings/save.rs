//! Writing the token into `config.toml`: the one place a credential touches the disk, so it is
//! written only into a private directory, never through a symbolic link, and atomically (a fresh
//! 0600 file renamed over the old one), keeping whatever else the user wrote in the file. A room
//! of its own so that these rules can be reviewed, and tested, without the reading code around.

use super::read::{ReadError, read_trusted};
use super::{SettingsError, config_path};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
    // The keys kept from the old file (a CA file among them) must be the user's own too.
    let mut table = match read_trusted(path) {
        Ok(Some((text, _))) => {
            toml::from_str::<toml::Table>(&text).map_err(|e| SettingsError::Invalid {
                path: path.to_path_buf(),
                // Overwriting would lose the theme and keys the user wrote; let them decide.
                message: format!(
                    "not valid TOML, so it was left alone; fix or remove it and log in again: {}",
                    e.to_string().trim_end()
                ),
            })?
        }
        Ok(None) => toml::Table::new(),
        Err(ReadError::Untrusted(e)) => return Err(e),
        Err(ReadError::Io(e)) => return Err(io_err(path, e)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::settings::{FILE_NAME, load_from, resolve_from};
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("exists").permissions().mode() & 0o777
    }

    #[test]
    fn save_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join(FILE_NAME);
        save_login_to(&path, "http://127.0.0.1:7878", "tok-1", None).expect("saved");
        assert_eq!(mode(&path), 0o600);
        let (s, warnings) = load_from(&path).expect("trusted");
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
        let (s, warnings) = load_from(&path).expect("trusted");
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
    fn the_ca_file_comes_from_the_environment_or_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        save_login_to(&path, "https://h:1", "t", Some(Path::new("ca.pem"))).expect("saved");
        let (file, warnings) = load_from(&path).expect("trusted");
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
        assert!(load_from(&path).expect("trusted").0.ca_file.is_some());
    }

    #[test]
    fn saving_keeps_nothing_from_a_file_others_may_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "ca_file = \"/tmp/theirs.pem\"\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
        let err = save_login_to(&path, "http://x:1", "t", None).expect_err("refused");
        assert!(matches!(err, SettingsError::Untrusted { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let left = fs::read_to_string(&path).expect("left alone");
        assert!(!left.contains("token"), "{left}");
    }
}
