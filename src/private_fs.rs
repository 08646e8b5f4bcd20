//! Files and directories only their owner may use: the database (audit log, token hashes), its
//! directory, and the client's `config.toml` (a token) with its directory. Shared by the server
//! and the client, so it imports nothing of ours.
//!
//! Each function returns what it had to fix, for the caller to warn about in its own channel
//! (the server's log, the CLI's stderr): silently tightening would hide that the files were
//! exposed until now.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Makes `dir` (and missing parents) with mode 0700. An existing directory must belong to this
/// user; one that others may write to is fixed to 0700, since they could swap the files in it.
pub fn ensure_private_dir(dir: &Path) -> io::Result<Option<String>> {
    if let Err(e) = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        && !dir.exists()
    {
        return Err(e);
    }
    // A symlinked directory is followed: only its owner could have placed the link in a
    // parent that is theirs, and the target is what gets checked.
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory: point the setting at a directory",
            dir.display()
        )));
    }
    check_owner(dir, &meta)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 == 0 {
        return Ok(None);
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(Some(format!(
        "{} was writable by other users (mode {mode:04o}); changed it to 0700",
        dir.display()
    )))
}

/// Makes sure `path` exists with mode 0600 before a library (SQLite) opens it: SQLite gives
/// the files it creates beside it (`-wal`, `-shm`) the main file's mode. An existing file, and
/// those beside it, that others may read is tightened.
pub fn ensure_private_file(path: &Path, siblings: &[&str]) -> io::Result<Vec<String>> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mut fixed = Vec::new();
    let mut paths = vec![path.to_path_buf()];
    paths.extend(siblings.iter().map(|s| {
        let mut p = path.as_os_str().to_owned();
        p.push(s);
        p.into()
    }));
    for p in paths {
        let meta = match fs::metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600))?;
            fixed.push(format!(
                "{} was readable by other users (mode {mode:04o}); changed it to 0600",
                p.display()
            ));
        }
    }
    Ok(fixed)
}

/// Refuses what another user owns: we could not keep them out of it.
fn check_owner(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    match foreign_owner(meta) {
        Some(whose) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} {whose}: use a directory of your own", path.display()),
        )),
        None => Ok(()),
    }
}

/// `belongs to user id N, not to you (user id M)`, when another user owns it.
fn foreign_owner(meta: &fs::Metadata) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    (meta.uid() != me).then(|| {
        format!(
            "belongs to user id {}, not to you (user id {me})",
            meta.uid()
        )
    })
}

/// Why what is in a file or directory may not be what its owner wrote, if it may not: another
/// user owns it, or the group or others may write to it. Nothing is fixed here, unlike
/// [`ensure_private_dir`]: what the caller is about to read may already be someone else's.
pub fn written_by_others(meta: &fs::Metadata) -> Option<String> {
    let mode = meta.permissions().mode() & 0o7777;
    foreign_owner(meta).or_else(|| {
        (mode & 0o022 != 0).then(|| format!("may be written by other users (mode {mode:04o})"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_file_is_0600_and_a_loose_one_is_tightened_with_its_siblings() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cb.db");
        assert!(ensure_private_file(&db, &["-wal"]).unwrap().is_empty());
        assert_eq!(mode(&db), 0o600);
        let wal = dir.path().join("cb.db-wal");
        fs::write(&wal, "").unwrap();
        for p in [&db, &wal] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
        }
        let fixed = ensure_private_file(&db, &["-wal", "-shm"]).unwrap();
        assert_eq!(fixed.len(), 2, "{fixed:?}");
        assert!(fixed[0].contains("mode 0644"), "{fixed:?}");
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
    }

    #[test]
    fn a_dir_others_can_write_is_fixed_and_a_new_one_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("a/b");
        assert_eq!(ensure_private_dir(&new).unwrap(), None);
        assert_eq!(mode(&new), 0o700);
        fs::set_permissions(&new, fs::Permissions::from_mode(0o777)).unwrap();
        let fixed = ensure_private_dir(&new).unwrap().expect("a warning");
        assert!(fixed.contains("mode 0777"), "{fixed}");
        assert_eq!(mode(&new), 0o700);
    }

    #[test]
    fn a_file_is_not_a_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let err = ensure_private_dir(&file).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
