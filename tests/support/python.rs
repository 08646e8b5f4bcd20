//! Python tools from PyPI for the tests (schemathesis, moto), each installed once into its own
//! virtualenv under `target/`, pinned. Without Python a test says it was skipped; under CI
//! (`CI` set) it fails, since `.ci/run` installs `python3-venv`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The virtualenv `target/<name>` with `requirement` installed, made (again) unless `works`
/// says the one there runs. A venv records its own path: one moved with its directory, or
/// half-installed, does not run, and is made again.
pub fn venv(
    name: &str,
    requirement: &str,
    works: impl Fn(&Path) -> bool,
) -> Result<PathBuf, String> {
    // Tests in one binary run in parallel: one install at a time.
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name);
    if works(&venv) {
        return Ok(venv);
    }
    let _ = std::fs::remove_dir_all(&venv);
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        requirement,
    ]))?;
    if !works(&venv) {
        return Err(format!(
            "{requirement} was installed into {} but does not run",
            venv.display()
        ));
    }
    Ok(venv)
}

/// Whether `program args…` runs and exits 0.
pub fn runs(program: &Path, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What a test does without the tool: skip (saying so) on a developer's machine, fail under CI.
pub fn required<T>(tool: &str, got: Result<T, String>) -> Option<T> {
    match got {
        Ok(t) => Some(t),
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: {tool} could not be installed ({why})");
            None
        }
        Err(why) => panic!("{tool} is required under CI: {why}"),
    }
}
