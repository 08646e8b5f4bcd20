//! Error rates from CloudWatch, read from a real server that speaks its API (moto's, see
//! `support::moto`), by the real binary whose credentials come from its environment, as they
//! would from the chain in production. Data goes in with boto3.

use crate::support::binary::{BinaryOptions, BinaryServer};
use crate::support::fakes::*;
use crate::support::moto::{self, Moto, Point};
use commandbridge::domain::verification::{RateCheck, VerificationDetail, VerificationState};
use std::time::Duration;

const NAMESPACE: &str = "AWS/ApplicationELB";

/// A service whose error rate is `HTTPCode_Target_5XX_Count` over `RequestCount` of load
/// balancer `lb`, read from `endpoint`.
fn cloudwatch_service(name: &str, lb: &str, endpoint: &str) -> String {
    format!(
        r#"
[[services]]
name = "{name}"

[services.error_rate]
max = 0.01

[services.error_rate.cloudwatch]
region = "{region}"
namespace = "{NAMESPACE}"
period_seconds = 60
window_minutes = 5
errors   = {{ metric = "HTTPCode_Target_5XX_Count", stat = "Sum", dimensions = {{ LoadBalancer = "{lb}" }} }}
requests = {{ metric = "RequestCount", stat = "Sum", dimensions = {{ LoadBalancer = "{lb}" }} }}
endpoint_url = "{endpoint}"
"#,
        region = moto::REGION
    )
}

fn traffic<'a>(lb: &'a [(&'a str, &'a str)], requests: f64, errors: f64) -> Vec<Point<'a>> {
    // Two minutes of traffic inside the 5-minute window; the ratio is over their sums.
    [(90, 0.5), (30, 0.5)]
        .into_iter()
        .flat_map(|(ago, share)| {
            [
                Point {
                    metric: "RequestCount",
                    dimensions: lb,
                    value: requests * share,
                    seconds_ago: ago,
                },
                Point {
                    metric: "HTTPCode_Target_5XX_Count",
                    dimensions: lb,
                    value: errors * share,
                    seconds_ago: ago,
                },
            ]
        })
        .collect()
}

fn rate_of(d: &VerificationDetail) -> RateCheck {
    d.verification
        .last_sample
        .as_ref()
        .and_then(|s| s.error_rate.clone())
        .expect("a sample with an error rate")
}

#[tokio::test(flavor = "multi_thread")]
async fn error_rates_from_cloudwatch_pass_degrade_and_say_when_there_is_no_traffic() {
    let Some(cw) = tokio::task::spawn_blocking(Moto::start)
        .await
        .expect("join")
    else {
        return;
    };
    // A second moto that checks access keys as AWS does: the test's key is not one it issued.
    let strict =
        tokio::task::spawn_blocking(|| Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]))
            .await
            .expect("join")
            .expect("moto is installed");
    let low = [("LoadBalancer", "app/low/1")];
    let high = [("LoadBalancer", "app/high/1")];
    let mut points = traffic(&low, 2000.0, 4.0); // 0.002
    points.extend(traffic(&high, 1000.0, 50.0)); // 0.05
    cw.put(NAMESPACE, &points);
    // An endpoint that is not there (a stopped server): nothing listens on a free port.
    let down = format!("http://127.0.0.1:{}", free_port());
    let extra = verification_toml(1.0)
        + &cloudwatch_service("cw-low", "app/low/1", &cw.endpoint)
        + &cloudwatch_service("cw-high", "app/high/1", &cw.endpoint)
        + &cloudwatch_service("cw-quiet", "app/quiet/1", &cw.endpoint)
        + &cloudwatch_service("cw-down", "app/low/1", &down)
        + &cloudwatch_service("cw-denied", "app/low/1", &strict.endpoint);
    let srv = BinaryServer::start(BinaryOptions {
        extra_config: extra,
        env: moto::aws_env(),
        ..BinaryOptions::default()
    })
    .await;
    let bob = srv.client("bob");
    let mut ids = Vec::new();
    for (i, target) in ["cw-low", "cw-high", "cw-quiet", "cw-down", "cw-denied"]
        .iter()
        .enumerate()
    {
        let change = executed(&bob, "record-medium", &format!("CHG-810{i}"), target).await;
        ids.push(verification_of(&bob, change).await.id);
    }
    let limit = Duration::from_secs(20);
    let sampled = |d: &VerificationDetail| d.verification.last_sample.is_some();

    let low = wait_until(&bob, ids[0], "a sample", limit, sampled).await;
    let r = rate_of(&low);
    assert!(r.ok, "{r:?}");
    assert!((r.value.expect("a value") - 0.002).abs() < 1e-9, "{r:?}");
    assert_eq!(
        r.source.as_deref(),
        Some("CloudWatch AWS/ApplicationELB Target_5XX/RequestCount")
    );
    assert_eq!(low.verification.state, VerificationState::Watching);

    let high = wait_state(&bob, ids[1], VerificationState::Degraded, limit).await;
    let r = rate_of(&high);
    assert!(
        !r.ok && (r.value.expect("a value") - 0.05).abs() < 1e-9,
        "{r:?}"
    );
    assert!(r.detail.contains("above the maximum 0.01"), "{r:?}");

    let quiet = wait_until(&bob, ids[2], "a sample", limit, sampled).await;
    let r = rate_of(&quiet);
    assert!(r.ok && r.value.is_none() && r.is_no_data(), "{r:?}");
    assert!(r.detail.contains("no requests in the last 5 min"), "{r:?}");
    assert_eq!(quiet.verification.state, VerificationState::Watching);

    let down = wait_state(&bob, ids[3], VerificationState::Degraded, limit).await;
    let r = rate_of(&down);
    assert!(!r.ok && r.value.is_none(), "{r:?}");
    assert!(
        r.detail.starts_with("CloudWatch unreachable:") && r.detail.contains("refused"),
        "{r:?}"
    );

    let denied = wait_state(&bob, ids[4], VerificationState::Degraded, limit).await;
    let r = rate_of(&denied);
    assert!(!r.ok && r.value.is_none(), "{r:?}");
    assert!(
        r.detail
            == "CloudWatch: InvalidClientTokenId for cloudwatch:GetMetricData (The security token \
                included in the request is invalid.)",
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_aws_credentials_the_start_warns_and_samples_say_so() {
    // No credentials anywhere in the chain: the environment's are empty, no profile files,
    // no instance metadata (and nothing listens at the endpoint: no request gets that far).
    let env: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_PROFILE", ""),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let extra = verification_toml(1.0) + &cloudwatch_service("cw-nokey", "app/x/1", &endpoint);

    // The warning, once, at the start.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = crate::support::TestDb::create(dir.path()).await;
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        crate::support::TestServer::config_text_for(dir.path(), &extra),
    )
    .expect("write the configuration");
    let mut child = tokio::process::Command::new(crate::support::binary::BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--database", &db.url])
        .args(["--listen", "127.0.0.1:0"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let warned = tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("CloudWatch error rates will fail every sample: no AWS credentials") {
                return Ok(line);
            }
            seen.push(line);
        }
        Err(seen.join("\n"))
    })
    .await
    .expect("a warning within 20 s");
    assert!(
        warned.is_ok(),
        "no warning about credentials in:\n{}",
        warned.unwrap_err()
    );
    child.kill().await.expect("stop the server");

    // And each sample says what is missing.
    let srv = BinaryServer::start(BinaryOptions {
        extra_config: extra,
        env,
        ..BinaryOptions::default()
    })
    .await;
    let bob = srv.client("bob");
    let change = executed(&bob, "record-medium", "CHG-8201", "cw-nokey").await;
    let id = verification_of(&bob, change).await.id;
    let d = wait_state(
        &bob,
        id,
        VerificationState::Degraded,
        Duration::from_secs(20),
    )
    .await;
    let r = rate_of(&d);
    assert!(
        r.detail.starts_with("CloudWatch: no AWS credentials"),
        "{r:?}"
    );
}
