//! The database a test server runs on. The suite runs twice over the same test files: `tests/all`
//! on SQLite files, `tests/postgres` on PostgreSQL (`CB_TEST_BACKEND=postgres`), each server on a
//! database of its own that is dropped with it.

use commandbridge::server::store::Store;
use sqlx::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backend of this test binary: `CB_TEST_BACKEND=postgres` (set by `tests/postgres`), else
/// SQLite.
pub fn backend() -> Backend {
    match std::env::var("CB_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

/// The PostgreSQL server the tests create their databases on (`CB_TEST_POSTGRES`, by default the
/// local one with trust authentication, as `.ci/run` starts it).
pub fn postgres_admin_url() -> String {
    std::env::var("CB_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Whether a test that reaches for the database file itself runs here; on PostgreSQL it says
/// why it does not.
pub fn sqlite_only(what: &str) -> bool {
    let sqlite = backend() == Backend::Sqlite;
    if !sqlite {
        eprintln!("SQLite only, not run on PostgreSQL: {what}");
    }
    sqlite
}

/// Whether a test of several servers on one database runs here: replicas need PostgreSQL (one
/// SQLite file belongs to one server). On SQLite it says so.
pub fn postgres_only(what: &str) -> bool {
    let postgres = backend() == Backend::Postgres;
    if !postgres {
        eprintln!("PostgreSQL only (tests/postgres runs it): {what}");
    }
    postgres
}

/// Called before any test of `tests/postgres` runs: a machine without PostgreSQL skips that
/// binary and says so; CI (`CI=true`) must not skip it, so there it fails instead.
pub fn require_postgres_or_skip() {
    let url = postgres_admin_url();
    let reachable = url::Url::parse(&url).ok().and_then(|u| {
        let addr = format!(
            "{}:{}",
            u.host_str().unwrap_or("127.0.0.1"),
            u.port().unwrap_or(5432)
        );
        std::net::ToSocketAddrs::to_socket_addrs(&addr)
            .ok()?
            .find(|a| std::net::TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok())
    });
    if reachable.is_some() {
        return;
    }
    let why = format!("no PostgreSQL answers at {url} (set CB_TEST_POSTGRES to another server)");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        eprintln!("PostgreSQL tests cannot be skipped in CI: {why}");
        std::process::exit(1);
    }
    eprintln!("PostgreSQL tests SKIPPED: {why}. `.ci/run` starts one.");
    std::process::exit(0);
}

/// One test server's database: a SQLite file in `dir`, or a fresh PostgreSQL database at this
/// binary's schema, dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    postgres_name: Option<String>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    pub async fn create(dir: &Path) -> TestDb {
        TestDb::create_on(backend(), dir).await
    }

    /// As [`TestDb::create`], on a backend chosen by the caller (a benchmark measuring both).
    pub async fn create_on(backend: Backend, dir: &Path) -> TestDb {
        let db = TestDb::empty_on(backend, dir).await;
        if db.postgres_name.is_some() {
            Store::migrate(&db.url)
                .await
                .expect("migrate the test database");
        }
        db
    }

    /// A database with no schema yet (on SQLite, a file that does not exist yet).
    pub async fn empty(dir: &Path) -> TestDb {
        TestDb::empty_on(backend(), dir).await
    }

    async fn empty_on(backend: Backend, dir: &Path) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.join("cb.db").display()),
                postgres_name: None,
            },
            Backend::Postgres => {
                let name = format!(
                    "cbt_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                );
                admin(&[
                    &format!("DROP DATABASE IF EXISTS {name}"),
                    &format!("CREATE DATABASE {name}"),
                ])
                .await;
                let url = database_url(&name);
                TestDb {
                    url,
                    postgres_name: Some(name),
                }
            }
        }
    }

    /// A copy of this database (the server stopped), to tamper with.
    pub async fn copy(&self, dir: &Path, label: &str) -> TestDb {
        match &self.postgres_name {
            None => {
                let from = self.url.strip_prefix("sqlite://").expect("a SQLite URL");
                let to = dir.join(format!("{label}.db"));
                std::fs::copy(from, &to).expect("copy the database");
                for suffix in ["-wal", "-shm"] {
                    let side = format!("{from}{suffix}");
                    if Path::new(&side).exists() {
                        std::fs::copy(&side, format!("{}{suffix}", to.display()))
                            .expect("copy the WAL");
                    }
                }
                TestDb {
                    url: format!("sqlite://{}", to.display()),
                    postgres_name: None,
                }
            }
            Some(name) => {
                let copy = format!("{name}_{label}");
                admin(&[
                    &format!("DROP DATABASE IF EXISTS {copy}"),
                    &format!("CREATE DATABASE {copy} TEMPLATE {name}"),
                ])
                .await;
                TestDb {
                    url: database_url(&copy),
                    postgres_name: Some(copy),
                }
            }
        }
    }

    /// Runs `statements` directly on the database, as someone with its file or its password.
    pub async fn tamper(&self, statements: &[&str]) {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url)
            .await
            .expect("connect to the database");
        for s in statements {
            sqlx::query(sqlx::AssertSqlSafe(*s))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        conn.close().await.expect("close");
    }

    /// One text value read directly from the database (`None` for no row or NULL).
    pub async fn text(&self, sql: &str) -> Option<String> {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url)
            .await
            .expect("connect to the database");
        let v: Option<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_optional(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
        v.flatten()
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.postgres_name.is_some()
    }

    /// The statement that drops the audit log's trigger `name`, in this database's dialect.
    pub fn drop_trigger(&self, name: &str) -> String {
        match self.postgres_name {
            None => format!("DROP TRIGGER {name}"),
            Some(_) => format!("DROP TRIGGER {name} ON audit_log"),
        }
    }
}

fn database_url(name: &str) -> String {
    let mut url = url::Url::parse(&postgres_admin_url()).expect("CB_TEST_POSTGRES is a URL");
    url.set_path(name);
    url.to_string()
}

/// Runs `statements` on the PostgreSQL server's maintenance database (as the tests' superuser).
pub async fn admin_statements(statements: &[String]) {
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    admin(&refs).await;
}

async fn admin(statements: &[&str]) {
    let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", postgres_admin_url()));
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(*s))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let _ = conn.close().await;
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on itself: a thread of its own
        // drops the database (FORCE ends the connections a stopped server may have left).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(admin(&[&format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )]));
        })
        .join();
    }
}
