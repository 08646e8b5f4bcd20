//! Several `serve` processes on one PostgreSQL database, as behind a load balancer: decisions,
//! exactly-once execution, caches and the audit chain hold across them. These run in
//! `tests/postgres`; on SQLite they say they do not apply.

use crate::support::binary::{BinaryOptions, BinaryServer};
use crate::support::*;
use serde_json::json;
