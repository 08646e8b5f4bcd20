//! The hash-chained audit log, checked by the real binary's `audit verify`.

use crate::support::*;
use serde_json::json;

// ---- audit verify through the real binary ---------------------------------------------------------

#[tokio::test]
async fn audit_verify_catches_altered_and_deleted_entries() {
    let mut srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob, carol) = (srv.client("alice"), srv.client("bob"), srv.client("carol"));
    let c = create(&alice, &req("record-high", "CHG-1", "web", json!({}))).await;
    bob.approve(c.id, &approve()).await.expect("approve");
    let d = create(&alice, &req("rotate-secrets", "CHG-1", "web", json!({}))).await;
    carol
        .deny(d.id, &deny("not this week"))
        .await
        .expect("deny");
    create(&bob, &req("pull-logs", "CHG-1", "web", json!({"lines": 1}))).await;
    let entries = bob.audit(None, Some(1000)).await.expect("audit");
    let n = entries.len() as i64;
    assert!(n >= 12, "{n} entries");
    assert_eq!(entries.last().expect("entries").seq, n);

    // While the server runs: intact.
    let out = audit_verify(&srv.db_url()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("intact") && stdout.contains(&format!("{n} entries")),
        "{stdout}"
    );

    srv.stop().await;
    let dir = srv.dir.path();

    // An altered detail.
    let altered = srv.db.copy(dir, "altered").await;
    altered
        .tamper(&[
            &altered.drop_trigger("audit_log_no_update"),
            r#"UPDATE audit_log SET detail = '{"approved":false}' WHERE seq = 7"#,
        ])
        .await;
    let out = audit_verify(&altered.url).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an altered entry passed");
    assert!(stderr.contains("entry 7"), "names the entry: {stderr}");
    assert!(stderr.contains("altered"), "{stderr}");

    // An altered entry whose own hash was recomputed: the next entry no longer follows it.
    let rehashed = srv.db.copy(dir, "rehashed").await;
    let e = &entries[4];
    let forged_detail = r#"{"forged":true}"#;
    let forged_hash = commandbridge::server::store::audit_hash(
        e.seq,
        e.at.timestamp_millis(),
        &e.actor,
        &e.kind,
        &e.subject,
        forged_detail,
        &e.prev_hash,
    );
    let update = format!(
        "UPDATE audit_log SET detail = '{forged_detail}', hash = '{forged_hash}' WHERE seq = {}",
        e.seq
    );
    rehashed
        .tamper(&[&rehashed.drop_trigger("audit_log_no_update"), &update])
        .await;
    let out = audit_verify(&rehashed.url).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a re-hashed entry passed");
    assert!(stderr.contains(&format!("entry {}", e.seq + 1)), "{stderr}");

    // A deleted entry in the middle.
    let middle = srv.db.copy(dir, "middle").await;
    middle
        .tamper(&[
            &middle.drop_trigger("audit_log_no_delete"),
            "DELETE FROM audit_log WHERE seq = 5",
        ])
        .await;
    let out = audit_verify(&middle.url).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a deleted entry passed");
    assert!(
        stderr.contains("entry 5") && stderr.contains("missing"),
        "{stderr}"
    );

    // The newest entry deleted.
    let newest = srv.db.copy(dir, "newest").await;
    newest
        .tamper(&[
            &newest.drop_trigger("audit_log_no_delete"),
            "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",
        ])
        .await;
    let out = audit_verify(&newest.url).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "deleting the newest entry passed");
    assert!(stderr.contains(&format!("entry {n}")), "{stderr}");

    // The untouched original still verifies.
    let out = audit_verify(&srv.db_url()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
