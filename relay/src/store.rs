//! Relay state in SQL: SQLite by default (one file, nothing to install), PostgreSQL to share one
//! database between relays. Both through sqlx's `Any` driver with the same queries: `$N`
//! placeholders and portable SQL, with the few differences in [`Dialect`]. Writes happen only
//! inside transactions owned by the relay core, one writer per relay; API handlers read through
//! the pool.

use crate::core::{StoredRecord, Write};
use crate::error::{Error, Result};
use crate::escrow::plan::SignedReplica;
use crate::leases::HeldLease;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool};
use sqlx::{Executor, Row};
use starling_protocol::api::{
    JobDetail, JobState, JobSummary, ReplicaState, ReplicaView, TaskState, TaskView, WorkerView,
};
use starling_protocol::job::JobSpec;
use starling_protocol::sign::SignedJob;
use starling_protocol::{Hash32, JobId, LeaseId, PublicKey, Signature, TaskId};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

/// Handle to the relay database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

/// Which SQL the database speaks, where SQLite and PostgreSQL differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The dialect of a connection (sqlx's `Any` names its backend).
    pub fn of(conn: &AnyConnection) -> Dialect {
        if conn.backend_name().eq_ignore_ascii_case("postgresql") { Dialect::Postgres } else { Dialect::Sqlite }
    }

    fn of_url(url: &str) -> Option<Dialect> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else {
            None
        }
    }

    /// The larger of two values: SQLite's two-argument `MAX`, PostgreSQL's `GREATEST`.
    fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }
}

const WORKER_COLUMNS: &str = "key, capabilities, replicas_returned, replicas_accepted, replicas_rejected, last_seen_ms";

fn worker_view(r: &AnyRow, online: &std::collections::HashSet<PublicKey>) -> Result<WorkerView> {
    let key: PublicKey = parse(r.get::<&str, _>(0), "worker key")?;
    Ok(WorkerView {
        online: online.contains(&key),
        key,
        capabilities: serde_json::from_str(r.get::<&str, _>(1)).ok(),
        replicas_returned: r.get::<i64, _>(2) as u64,
        replicas_accepted: r.get::<i64, _>(3) as u64,
        replicas_rejected: r.get::<i64, _>(4) as u64,
        last_seen_ms: ms(r.get(5)),
        escrow: None,
    })
}

/// The schema, once per dialect: each version exists in both folders with the same name
/// (`migrations_are_in_step`), and the relay's integration tests run on both.
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

fn parse<T: FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse().map_err(|_| Error::Corrupt(format!("bad {what}: {s}")))
}

pub(crate) fn job_state_str(s: JobState) -> &'static str {
    match s {
        JobState::Running => "running",
        JobState::Done => "done",
        JobState::Failed => "failed",
    }
}

fn job_state(s: &str) -> Result<JobState> {
    Ok(match s {
        "running" => JobState::Running,
        "done" => JobState::Done,
        "failed" => JobState::Failed,
        other => return Err(Error::Corrupt(format!("job state {other}"))),
    })
}

fn task_state(s: &str) -> Result<TaskState> {
    Ok(match s {
        "pending" => TaskState::Pending,
        "verified" => TaskState::Verified,
        "failed" => TaskState::Failed,
        other => return Err(Error::Corrupt(format!("task state {other}"))),
    })
}

pub(crate) fn replica_state_str(s: ReplicaState) -> &'static str {
    match s {
        ReplicaState::Leased => "leased",
        ReplicaState::Returned => "returned",
        ReplicaState::Accepted => "accepted",
        ReplicaState::Rejected => "rejected",
        ReplicaState::Lapsed => "lapsed",
        ReplicaState::Cancelled => "cancelled",
    }
}

fn replica_state(s: &str) -> Result<ReplicaState> {
    Ok(match s {
        "leased" => ReplicaState::Leased,
        "returned" => ReplicaState::Returned,
        "accepted" => ReplicaState::Accepted,
        "rejected" => ReplicaState::Rejected,
        "lapsed" => ReplicaState::Lapsed,
        "cancelled" => ReplicaState::Cancelled,
        other => return Err(Error::Corrupt(format!("replica state {other}"))),
    })
}

fn ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A running job as recovery needs it.
#[derive(Debug, Clone)]
pub struct RunningJob {
    pub id: JobId,
    pub job: SignedJob,
    pub deadline_ms: u64,
    pub tasks: Vec<PendingTask>,
    /// Decided tasks of a job whose tasks read each other's outputs: each verified task's
    /// output, `None` for a failed one (empty for a job without dependencies).
    pub decided: Vec<(u32, Option<Hash32>)>,
}

/// A pending task with the replicas that matter for deciding it.
#[derive(Debug, Clone)]
pub struct PendingTask {
    pub index: u32,
    pub lapses: u32,
    pub returned: Vec<ReturnedReplica>,
}

#[derive(Debug, Clone)]
pub struct ReturnedReplica {
    pub lease: LeaseId,
    pub worker: PublicKey,
    pub output_hash: Hash32,
}

/// Rows per multi-row statement. A statement's text depends on its row count, and SQLite
/// compiles a statement in time proportional to its length: chunks of these few sizes keep every
/// statement the relay writes among a handful, prepared once and cached by the driver. (256 rows
/// of six columns stay well under SQLite's 32,766 bound parameters.)
const CHUNK_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// `rows` cut into chunks whose lengths are all in [`CHUNK_SIZES`], largest first.
fn stable_chunks<T>(rows: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut rest = rows;
    for size in CHUNK_SIZES {
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            chunks.push(chunk);
            rest = tail;
        }
    }
    chunks
}

/// `head` followed by `rows` parenthesized rows of `columns` and `tail`. A column given as `""`
/// is a bound parameter (numbered `$1`, `$2`, ... across the rows, in order); any other text is
/// written as a literal.
fn multi_row(head: &str, rows: usize, columns: &[&str], tail: &str) -> String {
    let mut q = String::with_capacity(head.len() + tail.len() + rows * columns.len() * 6);
    q.push_str(head);
    let mut n = 0;
    for row in 0..rows {
        q.push_str(if row == 0 { "(" } else { ",(" });
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                q.push(',');
            }
            if c.is_empty() {
                n += 1;
                q.push('$');
                q.push_str(&n.to_string());
            } else {
                q.push_str(c);
            }
        }
        q.push(')');
    }
    q.push_str(tail);
    q
}

const SUMMARY_COLUMNS: &str = "id, label, kernel, client, state, tasks_total, tasks_verified, tasks_failed, created_at_ms, finished_at_ms, failure";

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` in WAL mode and migrates it.
    pub async fn open(path: &Path) -> Result<Store> {
        let path =
            path.to_str().ok_or_else(|| Error::Config(format!("database path {} is not UTF-8", path.display())))?;
        Self::connect(&format!("sqlite://{path}?mode=rwc")).await
    }

    /// Connects to the database at `url` (`sqlite://PATH` or `postgres://…`) and migrates it.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url)
            .ok_or_else(|| Error::Config("the database URL must start with sqlite:// or postgres://".into()))?;
        let pool = match dialect {
            Dialect::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL: readers never wait for the writer. synchronous FULL: a commit is
                            // on disk before a result is acknowledged or an event is sent. 64 MiB
                            // of page cache: the hot rows (running jobs' tasks and replicas) stay
                            // in memory between group commits.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
                                 PRAGMA cache_size = -65536; PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            // Reads from API handlers on every relay, the writer, and the leader's lock.
            Dialect::Postgres => AnyPoolOptions::new().max_connections(16).connect(url).await?,
        };
        match dialect {
            Dialect::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Dialect::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store { pool, dialect })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Creates the empty database `name` on the PostgreSQL server at `server` (a URL without a
    /// database: `postgres://user@host:port`) and returns its URL. For tests and setup scripts;
    /// `name` must be a plain identifier.
    pub async fn create_postgres_database(server: &str, name: &str) -> Result<String> {
        use sqlx::Connection;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(Error::Config(format!("database name {name:?} is not a plain identifier")));
        }
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
        admin.close().await?;
        Ok(format!("{server}/{name}"))
    }

    /// The URL of the embedded ledger's schema in this PostgreSQL database (created if needed):
    /// its own schema, so its migrations and tables stay apart from the relay's.
    pub async fn ledger_url(&self, url: &str) -> Result<String> {
        sqlx::query("CREATE SCHEMA IF NOT EXISTS ledger").execute(&self.pool).await?;
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(format!("{url}{sep}options=-c%20search_path%3Dledger"))
    }

    /// Checks, inside a write transaction, that `epoch` still leads the cluster (see
    /// [`crate::cluster`]); the row stays locked until the transaction ends, so no new leader
    /// takes over between the check and the commit.
    pub async fn check_fence(conn: &mut AnyConnection, epoch: i64) -> Result<()> {
        let done = sqlx::query("UPDATE relay_cluster SET epoch = epoch WHERE id = 1 AND epoch = $1")
            .bind(epoch)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 1 { Ok(()) } else { Err(Error::Fenced(epoch)) }
    }

    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(self.pool.begin().await?)
    }

    // ---- writes (applied by the driver, one transaction per batch) ----

    /// Whether a job with this client signature was already posted (read outside the writer).
    pub async fn job_signed(&self, signature: &Signature) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE signature = $1")
            .bind(signature.to_hex())
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    /// Applies a batch of the core's writes with a handful of multi-row statements, grouped by
    /// kind in an order that respects their dependencies (jobs before their leases, leases before
    /// their results, results before their final states, workers before their counters).
    pub async fn apply(conn: &mut AnyConnection, writes: &[Write]) -> Result<()> {
        let mut workers = Vec::new();
        let mut returned = Vec::new();
        let mut ended = Vec::new();
        let mut reserve = None;
        let mut states: HashMap<LeaseId, ReplicaState> = HashMap::new();
        let mut lapses: HashMap<TaskId, i64> = HashMap::new();
        let mut decided = Vec::new();
        let mut finished = Vec::new();
        let mut counts = Vec::new();
        let mut records: HashMap<PublicKey, StoredRecord> = HashMap::new();
        let mut not_evidence = Vec::new();
        for w in writes {
            match w {
                Write::InsertJob { id, job, created_ms, deadline_ms } => {
                    Self::insert_job(conn, *id, job, *created_ms, *deadline_ms).await?
                }
                Write::UpsertWorker { key, caps, at_ms } => workers.push((key, caps, at_ms)),
                Write::ReserveLeases { below } => reserve = Some(*below),
                Write::Returned(row) => returned.push((row, ReplicaState::Returned)),
                Write::LeaseEnded { lease, task, worker, assigned_ms, state } => {
                    ended.push((lease, task, worker, assigned_ms, state))
                }
                // The last state a batch gives a replica is the one that holds.
                Write::ReplicaState { lease, state } => {
                    states.insert(*lease, *state);
                }
                Write::Lapse { task } => *lapses.entry(*task).or_default() += 1,
                Write::VerifyTask { task, output_hash, at_ms } => {
                    decided.push((task, "verified", Some(output_hash.to_hex()), None, at_ms))
                }
                Write::FailTask { task, reason, at_ms } => {
                    decided.push((task, "failed", None, Some(reason.as_str()), at_ms))
                }
                Write::FinishJob { job, state, failure, at_ms } => finished.push((job, state, failure, at_ms)),
                Write::WorkerCounts { key, returned, accepted, rejected, at_ms } => {
                    counts.push((key, returned, accepted, rejected, at_ms))
                }
                Write::WorkerRecord { key, record } => {
                    records.insert(*key, *record);
                }
                Write::NotEvidence { lease } => not_evidence.push(*lease),
            }
        }
        let mut records: Vec<(PublicKey, StoredRecord)> = records.into_iter().collect();
        records.sort_unstable_by_key(|(k, _)| *k);
        for chunk in stable_chunks(&records) {
            let q = multi_row(
                "INSERT INTO worker_records (key, valid_run, abandoned, cooling_until_ms, barred) VALUES ",
                chunk.len(),
                &["", "", "", "", ""],
                " ON CONFLICT (key) DO UPDATE SET valid_run = excluded.valid_run, abandoned = excluded.abandoned,
                 cooling_until_ms = excluded.cooling_until_ms, barred = excluded.barred",
            );
            let mut query = sqlx::query(&q);
            for (key, r) in chunk {
                query = query
                    .bind(key.to_hex())
                    .bind(i64::from(r.valid_run))
                    .bind(i64::from(r.abandoned))
                    .bind(i64::try_from(r.cooling_until_wall_ms).unwrap_or(i64::MAX))
                    .bind(i64::from(r.barred));
            }
            query.execute(&mut *conn).await?;
        }
        for chunk in stable_chunks(&workers) {
            let q = multi_row(
                "INSERT INTO workers (key, capabilities, first_seen_ms, last_seen_ms) VALUES ",
                chunk.len(),
                &["", "", "", ""],
                " ON CONFLICT (key) DO UPDATE SET capabilities = excluded.capabilities, last_seen_ms = excluded.last_seen_ms",
            );
            let mut query = sqlx::query(&q);
            for (key, caps, at) in chunk {
                let at = **at as i64;
                query = query
                    .bind(key.to_hex())
                    .bind(serde_json::to_string(caps).expect("capabilities serialize"))
                    .bind(at)
                    .bind(at);
            }
            query.execute(&mut *conn).await?;
        }
        if let Some(below) = reserve {
            sqlx::query(&format!(
                "INSERT INTO relay_meta (key, value) VALUES ('leases_reserved', $1)
                     ON CONFLICT (key) DO UPDATE SET value = {}(relay_meta.value, excluded.value)",
                Dialect::of(conn).greatest()
            ))
            .bind(i64::try_from(below).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await?;
        }
        // A result decided in the batch it arrived in is written once, in its final state.
        for (row, state) in &mut returned {
            if let Some(last) = states.remove(&row.lease) {
                *state = last;
            }
        }
        for chunk in stable_chunks(&returned) {
            let q = multi_row(
                "INSERT INTO replicas (lease_id, job_id, idx, worker, state, assigned_at_ms, output_hash,
                 output_len, signature, returned_at_ms) VALUES ",
                chunk.len(),
                &["", "", "", "", "", "", "", "", "", ""],
                "",
            );
            let mut query = sqlx::query(&q);
            for (r, state) in chunk {
                query = query
                    .bind(r.lease.0 as i64)
                    .bind(r.task.job.0 as i64)
                    .bind(i64::from(r.task.index))
                    .bind(r.worker.to_hex())
                    .bind(replica_state_str(*state))
                    .bind(r.assigned_ms as i64)
                    .bind(r.output_hash.to_hex())
                    .bind(r.output_len as i64)
                    .bind(r.signature.to_hex())
                    .bind(r.at_ms as i64);
            }
            query.execute(&mut *conn).await?;
        }
        for chunk in stable_chunks(&ended) {
            let q = multi_row(
                "INSERT INTO replicas (lease_id, job_id, idx, worker, state, assigned_at_ms) VALUES ",
                chunk.len(),
                &["", "", "", "", "", ""],
                "",
            );
            let mut query = sqlx::query(&q);
            for (lease, task, worker, assigned, state) in chunk {
                query = query
                    .bind(lease.0 as i64)
                    .bind(task.job.0 as i64)
                    .bind(i64::from(task.index))
                    .bind(worker.to_hex())
                    .bind(replica_state_str(**state))
                    .bind(**assigned as i64);
            }
            query.execute(&mut *conn).await?;
        }
        let mut by_state: HashMap<ReplicaState, Vec<i64>> = HashMap::new();
        for (lease, state) in states {
            by_state.entry(state).or_default().push(lease.0 as i64);
        }
        for (state, ids) in by_state {
            for chunk in stable_chunks(&ids) {
                let params = (2..chunk.len() + 2).map(|n| format!("${n}")).collect::<Vec<_>>().join(",");
                let q = format!("UPDATE replicas SET state = $1 WHERE lease_id IN ({params})");
                let mut query = sqlx::query(&q).bind(replica_state_str(state));
                for id in chunk {
                    query = query.bind(*id);
                }
                query.execute(&mut *conn).await?;
            }
        }
        let lapses: Vec<(TaskId, i64)> = lapses.into_iter().collect();
        for chunk in stable_chunks(&lapses) {
            let q = multi_row(
                "UPDATE tasks SET lapses = lapses + v.column3 FROM (VALUES ",
                chunk.len(),
                &["", "", ""],
                ") AS v WHERE tasks.job_id = v.column1 AND tasks.idx = v.column2",
            );
            let mut query = sqlx::query(&q);
            for (task, n) in chunk {
                query = query.bind(task.job.0 as i64).bind(i64::from(task.index)).bind(*n);
            }
            query.execute(&mut *conn).await?;
        }
        let mut job_counters: HashMap<JobId, (i64, i64)> = HashMap::new();
        for chunk in stable_chunks(&decided) {
            let q = multi_row(
                "UPDATE tasks SET state = v.column3, output_hash = v.column4, failure = v.column5,
                 decided_at_ms = v.column6 FROM (VALUES ",
                chunk.len(),
                &["", "", "", "", "", ""],
                ") AS v WHERE tasks.job_id = v.column1 AND tasks.idx = v.column2 AND tasks.state = 'pending'",
            );
            let mut query = sqlx::query(&q);
            for (task, state, hash, failure, at) in chunk {
                let c = job_counters.entry(task.job).or_default();
                if *state == "verified" {
                    c.0 += 1;
                } else {
                    c.1 += 1;
                }
                query = query
                    .bind(task.job.0 as i64)
                    .bind(i64::from(task.index))
                    .bind(*state)
                    .bind(hash.clone())
                    .bind(*failure)
                    .bind(**at as i64);
            }
            query.execute(&mut *conn).await?;
        }
        let job_counters: Vec<(JobId, (i64, i64))> = job_counters.into_iter().collect();
        for chunk in stable_chunks(&job_counters) {
            let q = multi_row(
                "UPDATE jobs SET tasks_verified = tasks_verified + v.column2, tasks_failed = tasks_failed + v.column3
                 FROM (VALUES ",
                chunk.len(),
                &["", "", ""],
                ") AS v WHERE jobs.id = v.column1",
            );
            let mut query = sqlx::query(&q);
            for (job, (verified, failed)) in chunk {
                query = query.bind(job.0 as i64).bind(*verified).bind(*failed);
            }
            query.execute(&mut *conn).await?;
        }
        for (job, state, failure, at) in finished {
            sqlx::query(
                "UPDATE jobs SET state = $1, failure = $2, finished_at_ms = $3 WHERE id = $4 AND state = 'running'",
            )
            .bind(job_state_str(*state))
            .bind(failure.as_deref())
            .bind(*at as i64)
            .bind(job.0 as i64)
            .execute(&mut *conn)
            .await?;
        }
        // A worker's record shows nothing of a result before its task is decided: a returned
        // count or a last-seen time that moved when the result arrived would tell a watcher who
        // holds a replica of a pending task. Results are counted when their task is decided
        // (below), and only verdicts move a worker's last-seen time.
        let verdicts: Vec<_> = counts.into_iter().filter(|(_, _, a, j, _)| **a != 0 || **j != 0).collect();
        for chunk in stable_chunks(&verdicts) {
            let q = multi_row(
                "UPDATE workers SET replicas_accepted = replicas_accepted + v.column2,
                 replicas_rejected = replicas_rejected + v.column3, last_seen_ms = v.column4 FROM (VALUES ",
                chunk.len(),
                &["", "", "", ""],
                ") AS v WHERE workers.key = v.column1",
            );
            let mut query = sqlx::query(&q);
            for (key, _, a, j, at) in chunk {
                query = query.bind(key.to_hex()).bind(**a).bind(**j).bind(**at as i64);
            }
            query.execute(&mut *conn).await?;
        }
        for chunk in stable_chunks(&decided) {
            let q = multi_row(
                "UPDATE workers SET replicas_returned = replicas_returned + v.n FROM
                 (SELECT r.worker AS key, COUNT(*) AS n FROM (VALUES ",
                chunk.len(),
                &["", ""],
                ") AS d JOIN replicas r ON r.job_id = d.column1 AND r.idx = d.column2
                 WHERE r.output_hash IS NOT NULL GROUP BY r.worker) AS v WHERE workers.key = v.key",
            );
            let mut query = sqlx::query(&q);
            for (task, ..) in chunk {
                query = query.bind(task.job.0 as i64).bind(i64::from(task.index));
            }
            query.execute(&mut *conn).await?;
        }
        // After the replicas' rows, which a result decided in its own batch only now has.
        for chunk in stable_chunks(&not_evidence) {
            let q = multi_row("UPDATE replicas SET evidence = 0 WHERE lease_id IN ", 1, &vec![""; chunk.len()], "");
            let mut query = sqlx::query(&q);
            for lease in chunk {
                query = query.bind(lease.0 as i64);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn insert_job(
        conn: &mut AnyConnection,
        id: JobId,
        job: &SignedJob,
        created_ms: u64,
        deadline_ms: u64,
    ) -> Result<()> {
        let spec_json = serde_json::to_string(&job.spec).expect("spec serializes");
        sqlx::query(
            "INSERT INTO jobs (id, client, signature, spec_json, label, kernel, state, tasks_total, created_at_ms, deadline_ms)
             VALUES ($9, $1, $2, $3, $4, $5, 'running', $6, $7, $8)",
        )
        .bind(job.client.to_hex())
        .bind(job.signature.to_hex())
        .bind(spec_json)
        .bind(&job.spec.label)
        .bind(job.spec.kernel.display_name())
        .bind(job.spec.tasks.len() as i64)
        .bind(created_ms as i64)
        .bind(deadline_ms as i64)
        .bind(id.0 as i64)
        .execute(&mut *conn)
        .await?;
        for chunk in stable_chunks(&(0..job.spec.tasks.len() as i64).collect::<Vec<_>>()) {
            let q =
                multi_row("INSERT INTO tasks (job_id, idx, state) VALUES ", chunk.len(), &["", "", "'pending'"], "");
            let mut query = sqlx::query(&q);
            for idx in chunk {
                query = query.bind(id.0 as i64).bind(*idx);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Leases left `leased` by a relay from before migration 0004 (which wrote open leases): their
    /// workers are gone with the old process.
    pub async fn lapse_orphaned_leases(conn: &mut AnyConnection) -> Result<u64> {
        let done =
            sqlx::query("UPDATE replicas SET state = 'lapsed' WHERE state = 'leased'").execute(&mut *conn).await?;
        Ok(done.rows_affected())
    }

    // ---- reads ----

    /// Above every lease id stored or reserved by an earlier run.
    pub async fn next_lease_id(&self) -> Result<u64> {
        let row = sqlx::query(&format!(
            "SELECT {}((SELECT COALESCE(MAX(lease_id), 0) + 1 FROM replicas),
                        (SELECT COALESCE(MAX(value), 1) FROM relay_meta WHERE key = 'leases_reserved'))",
            self.dialect.greatest()
        ))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    /// Every worker record kept by earlier runs (see [`Write::WorkerRecord`]).
    pub async fn worker_records(&self) -> Result<Vec<(PublicKey, StoredRecord)>> {
        let rows = sqlx::query("SELECT key, valid_run, abandoned, cooling_until_ms, barred FROM worker_records")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let key: PublicKey = parse(r.get::<&str, _>(0), "worker key")?;
                let record = StoredRecord {
                    valid_run: u32::try_from(r.get::<i64, _>(1)).unwrap_or(0),
                    abandoned: u32::try_from(r.get::<i64, _>(2)).unwrap_or(u32::MAX),
                    cooling_until_wall_ms: u64::try_from(r.get::<i64, _>(3)).unwrap_or(0),
                    barred: r.get::<i64, _>(4) != 0,
                };
                Ok((key, record))
            })
            .collect()
    }

    pub async fn running_jobs(&self) -> Result<Vec<RunningJob>> {
        let rows = sqlx::query(
            "SELECT id, spec_json, deadline_ms, client, signature FROM jobs WHERE state = 'running' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let id = JobId(row.get::<i64, _>(0) as u64);
            let spec: JobSpec =
                serde_json::from_str(row.get::<&str, _>(1)).map_err(|e| Error::Corrupt(e.to_string()))?;
            let deadline_ms = ms(row.get(2));
            let client = parse(row.get::<&str, _>(3), "client key")?;
            let signature = parse(row.get::<&str, _>(4), "job signature")?;
            let task_rows =
                sqlx::query("SELECT idx, lapses FROM tasks WHERE job_id = $1 AND state = 'pending' ORDER BY idx")
                    .bind(id.0 as i64)
                    .fetch_all(&self.pool)
                    .await?;
            let replica_rows = sqlx::query(
                "SELECT idx, lease_id, worker, output_hash FROM replicas WHERE job_id = $1 AND state = 'returned' ORDER BY lease_id",
            )
            .bind(id.0 as i64)
            .fetch_all(&self.pool)
            .await?;
            let mut tasks: Vec<PendingTask> = task_rows
                .iter()
                .map(|r| PendingTask {
                    index: r.get::<i64, _>(0) as u32,
                    lapses: r.get::<i64, _>(1) as u32,
                    returned: vec![],
                })
                .collect();
            for r in replica_rows {
                let idx = r.get::<i64, _>(0) as u32;
                if let Ok(pos) = tasks.binary_search_by_key(&idx, |t| t.index) {
                    tasks[pos].returned.push(ReturnedReplica {
                        lease: LeaseId(r.get::<i64, _>(1) as u64),
                        worker: parse(r.get::<&str, _>(2), "worker key")?,
                        output_hash: parse(r.get::<&str, _>(3), "output hash")?,
                    });
                }
            }
            // A job whose tasks read each other's outputs resumes from what was decided.
            let mut decided = Vec::new();
            if spec.has_dependencies() {
                let rows = sqlx::query(
                    "SELECT idx, state, output_hash FROM tasks WHERE job_id = $1 AND state <> 'pending' ORDER BY idx",
                )
                .bind(id.0 as i64)
                .fetch_all(&self.pool)
                .await?;
                for r in rows {
                    let output = match r.get::<&str, _>(1) {
                        "verified" => Some(parse(
                            r.get::<Option<&str>, _>(2)
                                .ok_or_else(|| Error::Corrupt("verified task without output".into()))?,
                            "output hash",
                        )?),
                        _ => None,
                    };
                    decided.push((r.get::<i64, _>(0) as u32, output));
                }
            }
            jobs.push(RunningJob {
                id,
                job: SignedJob { spec, client, signature, deposit: None },
                deadline_ms,
                tasks,
                decided,
            });
        }
        Ok(jobs)
    }

    fn summary_from_row(row: &AnyRow) -> Result<JobSummary> {
        Ok(JobSummary {
            id: JobId(row.get::<i64, _>("id") as u64),
            label: row.get("label"),
            kernel: row.get("kernel"),
            client: parse(row.get::<&str, _>("client"), "client key")?,
            state: job_state(row.get::<&str, _>("state"))?,
            tasks_total: row.get::<i64, _>("tasks_total") as u32,
            tasks_verified: row.get::<i64, _>("tasks_verified") as u32,
            tasks_failed: row.get::<i64, _>("tasks_failed") as u32,
            created_at_ms: ms(row.get("created_at_ms")),
            finished_at_ms: row.get::<Option<i64>, _>("finished_at_ms").map(ms),
            failure: row.get("failure"),
        })
    }

    pub async fn job_summary(&self, id: JobId) -> Result<Option<JobSummary>> {
        let q = format!("SELECT {SUMMARY_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(&q).bind(id.0 as i64).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::summary_from_row).transpose()
    }

    pub async fn list_jobs(&self, state: Option<JobState>, limit: u32) -> Result<Vec<JobSummary>> {
        let rows = match state {
            Some(s) => {
                let q = format!("SELECT {SUMMARY_COLUMNS} FROM jobs WHERE state = $1 ORDER BY id DESC LIMIT $2");
                sqlx::query(&q).bind(job_state_str(s)).bind(i64::from(limit)).fetch_all(&self.pool).await?
            }
            None => {
                let q = format!("SELECT {SUMMARY_COLUMNS} FROM jobs ORDER BY id DESC LIMIT $1");
                sqlx::query(&q).bind(i64::from(limit)).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(Self::summary_from_row).collect()
    }

    /// A job with its tasks, and the replicas of its decided tasks. A task not yet decided shows
    /// none (no holders, no hashes, not even how many): a worker that could see them could copy
    /// another's answer, or learn whether it holds the last replica. Open leases live in memory
    /// only: `open` (read before this call, from the lease book) adds those that had not ended
    /// when the rows were read.
    pub async fn job_detail(&self, id: JobId, open: &[(LeaseId, HeldLease)]) -> Result<Option<JobDetail>> {
        let Some(summary) = self.job_summary(id).await? else {
            return Ok(None);
        };
        let spec_json: String = sqlx::query_scalar("SELECT spec_json FROM jobs WHERE id = $1")
            .bind(id.0 as i64)
            .fetch_one(&self.pool)
            .await?;
        let spec: JobSpec = serde_json::from_str(&spec_json).map_err(|e| Error::Corrupt(e.to_string()))?;
        let task_rows = sqlx::query("SELECT idx, state, output_hash FROM tasks WHERE job_id = $1 ORDER BY idx")
            .bind(id.0 as i64)
            .fetch_all(&self.pool)
            .await?;
        let mut tasks = Vec::with_capacity(task_rows.len());
        for r in &task_rows {
            tasks.push(TaskView {
                index: r.get::<i64, _>(0) as u32,
                state: task_state(r.get::<&str, _>(1))?,
                output_hash: r.get::<Option<&str>, _>(2).map(|h| parse(h, "output hash")).transpose()?,
                replicas: vec![],
            });
        }
        // Read after the tasks: a task read as decided stays decided, so its replicas are
        // whole; one decided meanwhile shows none until the next read.
        let replica_rows = sqlx::query(
            "SELECT r.idx, r.worker, r.state, r.output_hash, r.lease_id FROM replicas r
             JOIN tasks t ON t.job_id = r.job_id AND t.idx = r.idx
             WHERE r.job_id = $1 AND t.state <> 'pending' ORDER BY r.lease_id",
        )
        .bind(id.0 as i64)
        .fetch_all(&self.pool)
        .await?;
        let decided = |task: &TaskView| task.state != TaskState::Pending;
        let mut written = std::collections::HashSet::with_capacity(replica_rows.len());
        for r in &replica_rows {
            let idx = r.get::<i64, _>(0) as usize;
            written.insert(r.get::<i64, _>(4) as u64);
            if let Some(task) = tasks.get_mut(idx).filter(|t| decided(t)) {
                task.replicas.push(ReplicaView {
                    worker: parse(r.get::<&str, _>(1), "worker key")?,
                    state: replica_state(r.get::<&str, _>(2))?,
                    output_hash: r.get::<Option<&str>, _>(3).map(|h| parse(h, "output hash")).transpose()?,
                });
            }
        }
        let mut open: Vec<&(LeaseId, HeldLease)> =
            open.iter().filter(|(lease, held)| held.task.job == id && !written.contains(&lease.0)).collect();
        open.sort_by_key(|(lease, _)| *lease);
        for (_, held) in open {
            if let Some(task) = tasks.get_mut(held.task.index as usize).filter(|t| decided(t)) {
                task.replicas.push(ReplicaView { worker: held.worker, state: ReplicaState::Leased, output_hash: None });
            }
        }
        Ok(Some(JobDetail { summary, spec, tasks }))
    }

    /// The verified output hash of a task, if verified.
    pub async fn task_output(&self, task: TaskId) -> Result<Option<(TaskState, Option<Hash32>)>> {
        let row = sqlx::query("SELECT state, output_hash FROM tasks WHERE job_id = $1 AND idx = $2")
            .bind(task.job.0 as i64)
            .bind(i64::from(task.index))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok((
                task_state(r.get::<&str, _>(0))?,
                r.get::<Option<&str>, _>(1).map(|h| parse(h, "output hash")).transpose()?,
            ))
        })
        .transpose()
    }

    pub async fn workers(&self, online: &std::collections::HashSet<PublicKey>, limit: u32) -> Result<Vec<WorkerView>> {
        let rows = sqlx::query(&format!("SELECT {WORKER_COLUMNS} FROM workers ORDER BY last_seen_ms DESC LIMIT $1"))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| worker_view(r, online)).collect()
    }

    pub async fn worker(
        &self,
        key: &PublicKey,
        online: &std::collections::HashSet<PublicKey>,
    ) -> Result<Option<WorkerView>> {
        let row = sqlx::query(&format!("SELECT {WORKER_COLUMNS} FROM workers WHERE key = $1"))
            .bind(key.to_hex())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| worker_view(&r, online)).transpose()
    }

    /// Tasks verified over all jobs, ever.
    pub async fn tasks_verified_total(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(SUM(tasks_verified), 0) AS BIGINT) FROM jobs")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    /// The highest job id used so far (0 when none).
    pub async fn max_job_id(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM jobs").fetch_one(&self.pool).await?;
        Ok(n as u64)
    }

    /// A job's state and spec, for settlement.
    pub async fn job_state_spec(&self, job: JobId) -> Result<Option<(JobState, JobSpec)>> {
        let row = sqlx::query("SELECT state, spec_json FROM jobs WHERE id = $1")
            .bind(job.0 as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let spec = serde_json::from_str(r.get::<&str, _>(1))
                .map_err(|e| Error::Corrupt(format!("job {job} spec: {e}")))?;
            Ok((job_state(r.get::<&str, _>(0))?, spec))
        })
        .transpose()
    }

    /// Indices of a job's verified tasks.
    pub async fn verified_tasks(&self, job: JobId) -> Result<Vec<u32>> {
        let rows: Vec<i64> =
            sqlx::query_scalar("SELECT idx FROM tasks WHERE job_id = $1 AND state = 'verified' ORDER BY idx")
                .bind(job.0 as i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|i| i as u32).collect())
    }

    /// A verified task's agreed hash and every signed result returned for it (accepted and
    /// rejected), for settlement and slashing evidence. `None` unless the task is verified.
    pub async fn signed_results(&self, task: TaskId) -> Result<Option<(Hash32, Vec<SignedReplica>)>> {
        let Some((TaskState::Verified, Some(hash))) = self.task_output(task).await? else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT worker, output_hash, output_len, signature, state, evidence FROM replicas
             WHERE job_id = $1 AND idx = $2 AND signature IS NOT NULL AND state IN ('accepted', 'rejected', 'returned')
             ORDER BY lease_id",
        )
        .bind(task.job.0 as i64)
        .bind(i64::from(task.index))
        .fetch_all(&self.pool)
        .await?;
        let replicas = rows
            .iter()
            .map(|r| {
                Ok(SignedReplica {
                    worker: parse(r.get::<&str, _>(0), "worker key")?,
                    output_hash: parse(r.get::<&str, _>(1), "output hash")?,
                    output_len: r.get::<i64, _>(2) as u64,
                    signature: parse(r.get::<&str, _>(3), "signature")?,
                    accepted: r.get::<&str, _>(4) == "accepted",
                    rejected: r.get::<&str, _>(4) == "rejected" && r.get::<i64, _>(5) != 0,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some((hash, replicas)))
    }

    /// Indices of a job's verified tasks with a result the verifier rejected: where slashing
    /// evidence may be owed.
    pub async fn tasks_with_rejected_results(&self, job: JobId) -> Result<Vec<u32>> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT r.idx FROM replicas r JOIN tasks t ON t.job_id = r.job_id AND t.idx = r.idx
             WHERE r.job_id = $1 AND r.state = 'rejected' AND r.evidence = 1 AND r.signature IS NOT NULL
             AND t.state = 'verified'
             ORDER BY r.idx",
        )
        .bind(job.0 as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|i| i as u32).collect())
    }

    /// Every blob a stored job references: inputs in job specs and outputs named by results. At
    /// start-up, blobs outside this set are unreferenced uploads that expire (see `blobs`).
    pub async fn referenced_blobs(&self) -> Result<std::collections::HashSet<Hash32>> {
        let mut out = std::collections::HashSet::new();
        let specs: Vec<String> = sqlx::query_scalar("SELECT spec_json FROM jobs").fetch_all(&self.pool).await?;
        for spec in specs {
            let spec: JobSpec = serde_json::from_str(&spec).map_err(|e| Error::Corrupt(e.to_string()))?;
            out.extend(spec.tasks.iter().flat_map(|t| t.blobs()));
        }
        let outputs: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT output_hash FROM replicas WHERE output_hash IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        for hash in outputs {
            out.insert(parse(&hash, "output hash")?);
        }
        Ok(out)
    }

    pub async fn count_running_jobs(&self) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'running'").fetch_one(&self.pool).await?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_written_in_chunks_of_a_few_fixed_sizes() {
        for n in [0usize, 1, 3, 4, 17, 255, 256, 1000, 4097] {
            let rows: Vec<usize> = (0..n).collect();
            let chunks = stable_chunks(&rows);
            assert!(chunks.iter().all(|c| CHUNK_SIZES.contains(&c.len())), "{n}");
            assert_eq!(chunks.concat(), rows, "{n}: every row once, in order");
            assert!(chunks.len() <= n / 256 + 4 * 3, "{n}: {} statements", chunks.len());
        }
    }

    /// Every schema version exists for both databases under the same name, so a relay on either
    /// is at the same version after the same release. (That each pair gives the same tables and
    /// columns is checked on a real PostgreSQL by the integration tests, `schema_matches_sqlite`.)
    #[test]
    fn migrations_are_in_step() {
        let names =
            |m: &sqlx::migrate::Migrator| m.iter().map(|m| (m.version, m.description.to_string())).collect::<Vec<_>>();
        let sqlite = names(&SQLITE_MIGRATIONS);
        assert!(sqlite.len() >= 5, "{sqlite:?}");
        assert_eq!(sqlite, names(&POSTGRES_MIGRATIONS));
    }

    #[test]
    fn database_urls_name_their_dialect() {
        assert_eq!(Dialect::of_url("postgres://u@h/db"), Some(Dialect::Postgres));
        assert_eq!(Dialect::of_url("postgresql://u@h/db"), Some(Dialect::Postgres));
        assert_eq!(Dialect::of_url("sqlite:///tmp/x.db"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::of_url("mysql://h/db"), None);
    }

    /// Worker records survive a restart: the last one a batch gives a key is what is read back.
    #[tokio::test]
    async fn worker_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("relay.db")).await.unwrap();
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let first = StoredRecord { valid_run: 12, abandoned: 0, cooling_until_wall_ms: 0, barred: false };
        let barred =
            StoredRecord { valid_run: 0, abandoned: 3, cooling_until_wall_ms: 1_900_000_000_000, barred: true };
        let writes = vec![
            Write::WorkerRecord { key: a, record: first },
            Write::WorkerRecord { key: b, record: first },
            Write::WorkerRecord { key: b, record: barred },
        ];
        let mut db = store.begin().await.unwrap();
        Store::apply(&mut db, &writes).await.unwrap();
        db.commit().await.unwrap();
        drop(store);
        let store = Store::open(&dir.path().join("relay.db")).await.unwrap();
        let mut back = store.worker_records().await.unwrap();
        back.sort_by_key(|(k, _)| *k);
        assert_eq!(back, vec![(a, first), (b, barred)]);
    }
}
