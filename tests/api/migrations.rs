//! The two migration trees, `migrations/sqlite` and `migrations/postgres`, build the same
//! schema: the same tables, each with the same columns (name, nullability and, loosely, type)
//! and the same indexes by name. The SQLite tree is applied to an in-memory database; the
//! PostgreSQL tree to a fresh database on the server `MEDIAGATE_TEST_POSTGRES_URL` names, and
//! without one only the SQLite half runs.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection, Row, SqliteConnection};

/// A migration tree as it is on disk now (`sqlx::migrate!` would keep the files as they were
/// when this test was last compiled).
async fn tree(backend: &str) -> Migrator {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    Migrator::new(dir.join(backend)).await.unwrap()
}

/// Where the trees differ on purpose, as [`differences`] words it.
const INTENDED: &[&str] = &[
    // 0004_completed_objects.sql rebuilds SQLite's events clustered on (bucket, object_key,
    // etag), so its primary key does the work of PostgreSQL's unique events_object index.
    "index events.events_object: only in PostgreSQL",
];

#[derive(Debug, PartialEq)]
struct Column {
    kind: &'static str,
    not_null: bool,
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let null = if self.not_null { "NOT NULL" } else { "NULL" };
        write!(f, "{} {null}", self.kind)
    }
}

#[derive(Debug, Default)]
struct Table {
    columns: BTreeMap<String, Column>,
    indexes: BTreeSet<String>,
}

type Schema = BTreeMap<String, Table>;

/// The family a declared type belongs to, by SQLite's affinity rules (sqlite.org/datatype3.html,
/// 3.1), applied to PostgreSQL's type names too: BIGINT and INTEGER are both `integer`, TEXT and
/// `character varying` both `text`, REAL and `double precision` both `real`; `bytea` is
/// PostgreSQL's BLOB. So a column compares equal when SQLite stores its values the way
/// PostgreSQL's type holds them, whatever each spells the type.
fn kind(declared: &str) -> &'static str {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        "integer"
    } else if ["CHAR", "CLOB", "TEXT"].iter().any(|s| t.contains(s)) {
        "text"
    } else if t.is_empty() || t.contains("BLOB") || t == "BYTEA" {
        "blob"
    } else if ["REAL", "FLOA", "DOUB"].iter().any(|s| t.contains(s)) {
        "real"
    } else {
        "numeric"
    }
}

#[tokio::test]
async fn sqlite_and_postgresql_migrations_build_the_same_schema() {
    // The same versions in both trees: a change written for one backend only fails here even
    // without PostgreSQL.
    let versions = |m: &Migrator| -> Vec<(i64, String)> {
        m.iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect()
    };
    let (sqlite_tree, postgres_tree) = (tree("sqlite").await, tree("postgres").await);
    assert_eq!(
        versions(&sqlite_tree),
        versions(&postgres_tree),
        "the trees hold different migrations"
    );

    let sqlite = sqlite_schema(&sqlite_tree).await;
    // What is read is what the tree builds, so the comparison below is not between two empty
    // readings.
    for table in ["uploads", "events", "triggers", "workflows", "audit"] {
        assert!(
            sqlite.contains_key(table),
            "SQLite has no {table}: {sqlite:?}"
        );
    }
    assert_eq!(
        sqlite["uploads"].columns["checks"],
        Column {
            kind: "integer",
            not_null: true
        }
    );
    assert!(sqlite["uploads"].indexes.contains("uploads_unannounced"));

    let Some(postgres) = postgres_schema(&postgres_tree).await else {
        eprintln!(
            "note: MEDIAGATE_TEST_POSTGRES_URL is not set: the PostgreSQL migrations were not \
             applied or compared with SQLite's"
        );
        return;
    };
    assert_eq!(
        differences(&sqlite, &postgres),
        INTENDED,
        "the trees build different schemas (left); the intended differences are on the right"
    );
}

/// Each way `sqlite` and `postgres` differ, one line each, in a stable order.
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut found = Vec::new();
    let only = |in_sqlite: bool| {
        if in_sqlite {
            "only in SQLite"
        } else {
            "only in PostgreSQL"
        }
    };
    let names: BTreeSet<&String> = sqlite.keys().chain(postgres.keys()).collect();
    for name in names {
        let (Some(s), Some(p)) = (sqlite.get(name), postgres.get(name)) else {
            found.push(format!("table {name}: {}", only(sqlite.contains_key(name))));
            continue;
        };
        let columns: BTreeSet<&String> = s.columns.keys().chain(p.columns.keys()).collect();
        for column in columns {
            match (s.columns.get(column), p.columns.get(column)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => found.push(format!(
                    "column {name}.{column}: SQLite {a}, PostgreSQL {b}"
                )),
                (a, _) => found.push(format!("column {name}.{column}: {}", only(a.is_some()))),
            }
        }
        for index in s.indexes.symmetric_difference(&p.indexes) {
            let in_sqlite = s.indexes.contains(index);
            found.push(format!("index {name}.{index}: {}", only(in_sqlite)));
        }
    }
    found
}

/// The schema the SQLite tree builds. Indexes are those made by CREATE INDEX (SQLite names the
/// ones behind PRIMARY KEY and UNIQUE itself). A column of a WITHOUT ROWID table's primary key
/// is NOT NULL whether or not it says so, as SQLite enforces it there.
async fn sqlite_schema(tree: &Migrator) -> Schema {
    let mut db = SqliteConnection::connect("sqlite::memory:").await.unwrap();
    tree.run(&mut db).await.expect("SQLite migrations apply");
    let tables: Vec<(String, bool)> = sqlx::query_as(
        "SELECT name, wr FROM pragma_table_list \
         WHERE schema = 'main' AND type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for (name, without_rowid) in tables {
        let mut table = Table::default();
        let columns = sqlx::query(r#"SELECT name, type, "notnull", pk FROM pragma_table_info(?)"#)
            .bind(&name)
            .fetch_all(&mut db)
            .await
            .unwrap();
        for c in columns {
            let in_key = c.get::<i64, _>("pk") > 0;
            let column = Column {
                kind: kind(c.get("type")),
                not_null: c.get::<bool, _>("notnull") || (without_rowid && in_key),
            };
            table.columns.insert(c.get("name"), column);
        }
        table.indexes = sqlx::query_scalar(
            "SELECT name FROM pragma_index_list(?) WHERE origin = 'c' ORDER BY name",
        )
        .bind(&name)
        .fetch_all(&mut db)
        .await
        .unwrap()
        .into_iter()
        .collect();
        schema.insert(name, table);
    }
    schema
}

/// The schema the PostgreSQL tree builds in a fresh database on the server
/// `MEDIAGATE_TEST_POSTGRES_URL` names (dropped afterwards); `None` without one. Indexes are
/// those made by CREATE INDEX, not the ones behind PRIMARY KEY and UNIQUE constraints, as on
/// SQLite.
async fn postgres_schema(tree: &Migrator) -> Option<Schema> {
    let server = std::env::var("MEDIAGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())?;
    let name = format!("mg_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let (base, _) = server.rsplit_once('/').expect("URL has a database path");
    let mut db = PgConnection::connect(&format!("{base}/{name}"))
        .await
        .unwrap();
    tree.run(&mut db)
        .await
        .expect("PostgreSQL migrations apply");

    let mut schema = Schema::new();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    for table in tables {
        schema.insert(table, Table::default());
    }
    let columns = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = current_schema()",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    for c in columns {
        if let Some(table) = schema.get_mut(c.get::<&str, _>("table_name")) {
            let column = Column {
                kind: kind(c.get("data_type")),
                not_null: c.get::<&str, _>("is_nullable") == "NO",
            };
            table.columns.insert(c.get("column_name"), column);
        }
    }
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT tablename::text, indexname::text FROM pg_indexes \
         WHERE schemaname = current_schema() AND indexname NOT IN \
         (SELECT conname FROM pg_constraint WHERE connamespace = current_schema()::regnamespace)",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    for (table, index) in indexes {
        if let Some(table) = schema.get_mut(&table) {
            table.indexes.insert(index);
        }
    }

    db.close().await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    Some(schema)
}
