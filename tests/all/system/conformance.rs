//! The OpenAPI document is a contract: an outside fuzzer (schemathesis) generates requests from
//! `/api/v1/openapi.json` and checks that every status code and body the server answers is one
//! the document promises, and that requests the document forbids are refused. A fixed seed and
//! a bounded number of examples keep the run short and repeatable.
//!
//! Schemathesis is a Python tool: it is installed once into `target/schemathesis-venv` (pinned,
//! from PyPI). Without Python the test says it was skipped; under CI it must run.

use crate::support::python;
use crate::support::*;
use std::path::PathBuf;
use std::process::Command;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The `st` executable, installing it into its venv when it is not there yet.
fn schemathesis() -> Result<PathBuf, String> {
    let venv = python::venv("schemathesis-venv", SCHEMATHESIS, |venv| {
        python::runs(&venv.join("bin/st"), &["--version"])
    })?;
    Ok(venv.join("bin/st"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_says_what_the_server_does() {
    let Some(st) = python::required("schemathesis", schemathesis()) else {
        return;
    };
    let srv = TestServer::start(TUESDAY_10).await;
    let base = srv.base().to_string();
    let token = srv.token("bob").to_string();
    // The event stream stays open by design; a fuzzer waiting for its end would hang.
    // Schemathesis keeps a cache of what it found in its working directory: not in the repo.
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let cwd = scratch.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .current_dir(cwd)
            .args([
                "run",
                &format!("{base}/api/v1/openapi.json"),
                "--url",
                &base,
            ])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "status_code_conformance,response_schema_conformance,negative_data_rejection",
                "--seed",
                "1",
                "--max-examples",
                "30",
                "--workers",
                "1",
                "--exclude-path",
                "/api/v1/events",
                "--no-color",
            ])
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("join");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the server answered what its OpenAPI document does not promise:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
