//! Error rates from CloudWatch: one `GetMetricData` call per sample, in CloudWatch's JSON
//! protocol (what boto3 speaks; `X-Amz-Target: GraniteServiceVersion20100801.GetMetricData`),
//! signed with the official SigV4 signer, over the service's own reqwest client (so its
//! `ca_file` and the 5 s limit apply).
//!
//! Why not `aws-sdk-cloudwatch`: from 1.100 it speaks only the CBOR protocol, which moto's
//! server (the one local peer for tests) does not understand, and pinning 1.99.0 would freeze a
//! large SDK in time with a second set of smithy crates. One call with three shapes is small
//! enough to type here. Credentials and region still come from the standard chain
//! (`aws-config`): environment, shared profile, SSO, container or instance role.
//!
//! The ratio is computed here rather than with metric math (`m1/m2`): moto does not evaluate
//! metric math, and summing over the window is what "the rate over the last 5 minutes" means.

use crate::config::{CloudWatchConfig, MetricSpec};
use crate::domain::verification::RateCheck;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TARGET: &str = "GraniteServiceVersion20100801.GetMetricData";
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// The SigV4 signing name of CloudWatch (its endpoint prefix).
const SIGNING_NAME: &str = "monitoring";
/// Credentials this close to their expiry are fetched again before use.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Credentials and region from the standard AWS chain, looked up once; credentials are cached
/// until shortly before they expire (an instance role's last hours, a static key for ever).
pub struct Aws {
    credentials: Option<SharedCredentialsProvider>,
    region: Option<String>,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl Aws {
    /// The standard chain. Its own HTTP calls (instance metadata, STS, SSO) use the same rustls
    /// and ring as everything else.
    pub async fn from_environment() -> Aws {
        use aws_smithy_http_client::tls;
        crate::tls::install_provider();
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .load()
            .await;
        Aws {
            credentials: config.credentials_provider(),
            region: config.region().map(|r| r.to_string()),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Current credentials, or why there are none (in the chain's words).
    pub async fn credentials(&self) -> Result<Credentials, String> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expiry()
                .is_none_or(|t| t > SystemTime::now() + REFRESH_BEFORE);
            if fresh {
                return Ok(c.clone());
            }
        }
        let provider = self
            .credentials
            .as_ref()
            .ok_or("no AWS credentials provider could be set up")?;
        let c = provider.provide_credentials().await.map_err(|e| {
            format!(
                "no AWS credentials ({}); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
                 AWS_PROFILE, or give the server a role",
                super::verifier::root_cause(&e)
            )
        })?;
        *cached = Some(c.clone());
        Ok(c)
    }

    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }
}

// ---- the wire shapes (botocore's service model, JSON protocol 1.0) ---------------------------

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetMetricDataInput<'a> {
    metric_data_queries: Vec<MetricDataQuery<'a>>,
    /// Epoch seconds, as the JSON protocol writes timestamps.
    start_time: u64,
    end_time: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDataQuery<'a> {
    id: &'a str,
    metric_stat: MetricStat<'a>,
    return_data: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricStat<'a> {
    metric: Metric<'a>,
    period: u32,
    stat: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metric<'a> {
    namespace: &'a str,
    metric_name: &'a str,
    dimensions: Vec<Dimension<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Dimension<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetMetricDataOutput {
    #[serde(default)]
    metric_data_results: Vec<MetricDataResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDataResult {
    id: String,
    #[serde(default)]
    values: Vec<f64>,
    #[serde(default)]
    status_code: Option<String>,
}

/// An error answer: `__type` is `[namespace#]Code`; the message's key is either case.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(rename = "Message", default)]
    message_upper: Option<String>,
}

// ---- one reading -------------------------------------------------------------------------------

/// The error rate over the window ending now, as a check against `max`.
pub async fn rate(
    http: &reqwest::Client,
    aws: &Aws,
    cfg: &CloudWatchConfig,
    max: f64,
) -> RateCheck {
    match read(http, aws, cfg, max).await {
        Ok(check) => check,
        Err(why) => RateCheck::unreadable(max, why),
    }
}

async fn read(
    http: &reqwest::Client,
    aws: &Aws,
    cfg: &CloudWatchConfig,
    max: f64,
) -> Result<RateCheck, String> {
    let region = cfg.region.as_deref().or(aws.region()).ok_or(
        "CloudWatch: no region; set region in [services.error_rate.cloudwatch] or AWS_REGION",
    )?;
    let endpoint = match &cfg.endpoint_url {
        Some(url) => url.clone(),
        None => format!("https://monitoring.{region}.amazonaws.com/"),
    };
    // The chain may ask the instance metadata service or STS: bounded like every other call.
    let credentials = tokio::time::timeout(super::verifier::HEALTH_TIMEOUT, aws.credentials())
        .await
        .map_err(|_| {
            format!(
                "CloudWatch: no AWS credentials within {} s (the credential chain did not answer)",
                super::verifier::HEALTH_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("CloudWatch: {e}"))?;
    // Real time, not the server's clock: CloudWatch's data is stamped with real time, and a
    // drill's simulated clock would ask for a window with nothing in it.
    let end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let body = serde_json::to_vec(&request(cfg, end)).map_err(|e| e.to_string())?;
    let headers = sign(&endpoint, region, &credentials, &body)?;
    let mut req = http
        .post(&endpoint)
        .header("content-type", CONTENT_TYPE)
        .header("x-amz-target", TARGET);
    for (name, value) in &headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| super::verifier::transport_detail(&e, "CloudWatch"))?;
    let status = resp.status();
    let query_error = resp
        .headers()
        .get("x-amzn-query-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| super::verifier::transport_detail(&e, "CloudWatch"))?;
    if !status.is_success() {
        return Err(error_detail(status, query_error.as_deref(), &bytes));
    }
    let out: GetMetricDataOutput = serde_json::from_slice(&bytes).map_err(|e| {
        format!("CloudWatch answered {status} with a body that is not GetMetricData's: {e}")
    })?;
    let window = cfg.window_minutes;
    let sums = sums(&out)?;
    let check = match (&cfg.errors, &cfg.requests, &cfg.metric) {
        (Some(_), Some(_), _) => {
            let requests = sums.get("requests").map_or(0.0, |(sum, _)| *sum);
            // A load balancer publishes no 5XX count in a period without errors: absent is 0.
            let errors = sums.get("errors").map_or(0.0, |(sum, _)| *sum);
            if requests <= 0.0 {
                RateCheck::no_data(
                    max,
                    format!("no data: no requests in the last {window} min"),
                )
            } else {
                RateCheck::reading(errors / requests, max)
            }
        }
        _ => match sums.get("metric") {
            Some((sum, n)) if *n > 0 => RateCheck::reading(sum / *n as f64, max),
            _ => RateCheck::no_data(max, format!("no data in the last {window} min")),
        },
    };
    Ok(check)
}

fn request(cfg: &CloudWatchConfig, end: u64) -> GetMetricDataInput<'_> {
    let queries = [
        ("errors", &cfg.errors),
        ("requests", &cfg.requests),
        ("metric", &cfg.metric),
    ]
    .into_iter()
    .filter_map(|(id, m)| m.as_ref().map(|m| query(cfg, id, m)))
    .collect();
    GetMetricDataInput {
        metric_data_queries: queries,
        start_time: end.saturating_sub(u64::from(cfg.window_minutes) * 60),
        end_time: end,
    }
}

fn query<'a>(cfg: &'a CloudWatchConfig, id: &'a str, m: &'a MetricSpec) -> MetricDataQuery<'a> {
    MetricDataQuery {
        id,
        metric_stat: MetricStat {
            metric: Metric {
                namespace: &cfg.namespace,
                metric_name: &m.metric,
                dimensions: m
                    .dimensions
                    .iter()
                    .map(|(name, value)| Dimension { name, value })
                    .collect(),
            },
            period: cfg.period_seconds,
            stat: &m.stat,
        },
        return_data: true,
    }
}

/// Per query id: the sum of its values and how many there were. A query CloudWatch could not
/// answer completely for lack of permission or by an internal error fails the sample.
fn sums(out: &GetMetricDataOutput) -> Result<BTreeMap<&str, (f64, usize)>, String> {
    let mut sums = BTreeMap::new();
    for r in &out.metric_data_results {
        match r.status_code.as_deref() {
            Some("Forbidden") => {
                return Err(format!(
                    "CloudWatch: Forbidden for the metric of query '{}'",
                    r.id
                ));
            }
            Some("InternalError") => {
                return Err(format!(
                    "CloudWatch: InternalError reading the metric of query '{}'",
                    r.id
                ));
            }
            _ => {}
        }
        let entry = sums.entry(r.id.as_str()).or_insert((0.0, 0));
        entry.0 += r.values.iter().sum::<f64>();
        entry.1 += r.values.len();
    }
    Ok(sums)
}

/// SigV4 headers (authorization, x-amz-date, the session token) for one POST of `body`.
fn sign(
    endpoint: &str,
    region: &str,
    credentials: &Credentials,
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let bad = |e: &dyn std::fmt::Display| format!("CloudWatch: cannot sign the request: {e}");
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| bad(&e))?
        .into();
    let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
    let signable = SignableRequest::new(
        "POST",
        endpoint,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| bad(&e))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| bad(&e))?.into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// "CloudWatch: AccessDenied for cloudwatch:GetMetricData (User: … is not authorized …)".
fn error_detail(status: reqwest::StatusCode, query_error: Option<&str>, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    // Some front ends (and moto's key check) answer in the Query protocol's XML instead.
    let xml = |tag: &str| {
        let open = format!("<{tag}>");
        let start = text.find(&open)? + open.len();
        let len = text[start..].find(&format!("</{tag}>"))?;
        Some(text[start..start + len].trim().to_string())
    };
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok().or_else(|| {
        Some(ErrorBody {
            kind: xml("Code"),
            message: xml("Message"),
            message_upper: None,
        })
        .filter(|b| b.kind.is_some())
    });
    // The query-compatible code ("AccessDenied;Sender") is the one the documentation and IAM
    // use; `__type` carries the JSON protocol's ("AccessDeniedException").
    let code = query_error
        .and_then(|q| q.split(';').next())
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .or_else(|| {
            parsed
                .as_ref()
                .and_then(|p| p.kind.as_deref())
                .map(|k| k.rsplit('#').next().unwrap_or(k).to_string())
        })
        .unwrap_or_else(|| status.to_string());
    let message = parsed
        .as_ref()
        .and_then(|p| p.message.clone().or_else(|| p.message_upper.clone()))
        .unwrap_or_else(|| text.trim().chars().take(200).collect());
    if message.is_empty() {
        format!("CloudWatch: {code} for cloudwatch:GetMetricData (HTTP {status})")
    } else {
        format!("CloudWatch: {code} for cloudwatch:GetMetricData ({message})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_text: &str) -> CloudWatchConfig {
        toml::from_str(toml_text).expect("a cloudwatch table")
    }

    #[test]
    fn the_request_names_both_metrics_over_the_window() {
        let c = cfg(r#"
            namespace = "AWS/ApplicationELB"
            errors   = { metric = "HTTPCode_Target_5XX_Count", stat = "Sum", dimensions = { LoadBalancer = "app/x/1" } }
            requests = { metric = "RequestCount", stat = "Sum", dimensions = { LoadBalancer = "app/x/1" } }
        "#);
        let body = serde_json::to_value(request(&c, 1_000_000)).expect("json");
        assert_eq!(body["StartTime"], 1_000_000 - 300);
        assert_eq!(body["EndTime"], 1_000_000);
        let q = &body["MetricDataQueries"];
        assert_eq!(q[0]["Id"], "errors");
        assert_eq!(
            q[0]["MetricStat"]["Metric"]["MetricName"],
            "HTTPCode_Target_5XX_Count"
        );
        assert_eq!(
            q[0]["MetricStat"]["Metric"]["Dimensions"][0],
            serde_json::json!({"Name": "LoadBalancer", "Value": "app/x/1"})
        );
        assert_eq!(q[1]["Id"], "requests");
        assert_eq!(q[1]["MetricStat"]["Period"], 60);
        assert_eq!(q[1]["MetricStat"]["Stat"], "Sum");
    }

    #[test]
    fn errors_say_the_code_and_the_action() {
        let denied = error_detail(
            reqwest::StatusCode::BAD_REQUEST,
            Some("AccessDenied;Sender"),
            br#"{"__type":"com.amazonaws.cloudwatch#AccessDeniedException","message":"User x is not authorized"}"#,
        );
        assert_eq!(
            denied,
            "CloudWatch: AccessDenied for cloudwatch:GetMetricData (User x is not authorized)"
        );
        let throttled = error_detail(
            reqwest::StatusCode::BAD_REQUEST,
            None,
            br#"{"__type":"Throttling","Message":"Rate exceeded"}"#,
        );
        assert_eq!(
            throttled,
            "CloudWatch: Throttling for cloudwatch:GetMetricData (Rate exceeded)"
        );
        let xml = error_detail(
            reqwest::StatusCode::FORBIDDEN,
            None,
            b"<?xml version=\"1.0\"?><ErrorResponse><Error><Code>InvalidClientTokenId</Code>\
              <Message>The security token included in the request is invalid.</Message>\
              </Error></ErrorResponse>",
        );
        assert_eq!(
            xml,
            "CloudWatch: InvalidClientTokenId for cloudwatch:GetMetricData (The security token \
             included in the request is invalid.)"
        );
        let bare = error_detail(reqwest::StatusCode::NOT_FOUND, None, b"");
        assert!(bare.contains("404"), "{bare}");
    }

    #[test]
    fn a_forbidden_metric_fails_the_sample() {
        let out: GetMetricDataOutput = serde_json::from_str(
            r#"{"MetricDataResults":[{"Id":"errors","Values":[],"StatusCode":"Forbidden"}]}"#,
        )
        .expect("json");
        assert!(sums(&out).unwrap_err().contains("Forbidden"));
    }
}
