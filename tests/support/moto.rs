//! A real server that speaks CloudWatch's API: moto's (PyPI `moto[server]`, pinned), in its own
//! virtualenv under `target/`, one process per test on a loopback port. Data goes in through
//! its API with boto3, as an application would publish it.

use super::fakes::free_port;
use super::python;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MOTO: &str = "moto[server]==5.2.5";
pub const REGION: &str = "eu-west-1";

/// What the server's AWS credential chain finds in its environment in these tests (moto takes
/// any key).
pub fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        // No profile file and no instance metadata to wait for: the environment is the chain.
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub struct Moto {
    child: Child,
    python: PathBuf,
    pub endpoint: String,
}

/// One data point to publish: metric, its dimensions, value, and how many seconds ago.
pub struct Point<'a> {
    pub metric: &'a str,
    pub dimensions: &'a [(&'a str, &'a str)],
    pub value: f64,
    pub seconds_ago: u64,
}

impl Moto {
    /// Starts moto's server, installing it first if needed; `None` when that is impossible
    /// outside CI (the test then says it was skipped).
    pub fn start() -> Option<Moto> {
        Moto::start_with(&[])
    }

    /// [`Moto::start`] with environment variables for the server, e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT=0`, which makes it check the access key as AWS does.
    pub fn start_with(env: &[(&str, &str)]) -> Option<Moto> {
        let venv = python::required(
            "moto",
            python::venv("moto-venv", MOTO, |venv| {
                python::runs(
                    &venv.join("bin/python"),
                    &["-c", "import moto.server, boto3, flask"],
                )
            }),
        )?;
        let port = free_port();
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            child,
            python: venv.join("bin/python"),
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    /// Publishes `points` in `namespace` with boto3's `put_metric_data`.
    pub fn put(&self, namespace: &str, points: &[Point]) {
        let data: Vec<serde_json::Value> = points
            .iter()
            .map(|p| {
                serde_json::json!({
                    "MetricName": p.metric,
                    "Dimensions": p.dimensions.iter()
                        .map(|(k, v)| serde_json::json!({"Name": k, "Value": v}))
                        .collect::<Vec<_>>(),
                    "Value": p.value,
                    "Unit": "Count",
                    "SecondsAgo": p.seconds_ago,
                })
            })
            .collect();
        const SCRIPT: &str = r#"
import boto3, datetime, json, sys
endpoint, region, namespace, data = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
cw = boto3.client("cloudwatch", region_name=region, endpoint_url=endpoint,
                  aws_access_key_id="test", aws_secret_access_key="test")
now = datetime.datetime.now(datetime.timezone.utc)
for d in data:
    d["Timestamp"] = now - datetime.timedelta(seconds=d.pop("SecondsAgo"))
cw.put_metric_data(Namespace=namespace, MetricData=data)
"#;
        let out = Command::new(&self.python)
            .args(["-c", SCRIPT, &self.endpoint, REGION, namespace])
            .arg(serde_json::Value::from(data).to_string())
            .output()
            .expect("run boto3");
        assert!(
            out.status.success(),
            "put_metric_data failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
