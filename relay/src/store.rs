//! Relay state in SQL (SQLite by default). Writes happen only inside transactions owned by the
//! relay core, one writer per relay; API handlers read through the pool. Queries use `$N`
//! placeholders and portable SQL so a PostgreSQL backend can share them.

use crate::error::{Error, Result};
use crate::escrow::plan::SignedReplica;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use starling_protocol::events::{
    JobDetail, JobState, JobSummary, ReplicaState, ReplicaView, TaskState, TaskView, WorkerView,
};
use starling_protocol::job::JobSpec;
use starling_protocol::sign::SignedJob;
use starling_protocol::worker::Capabilities;
use starling_protocol::{Hash32, JobId, LeaseId, PublicKey, Signature, TaskId};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Handle to the relay database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

const WORKER_COLUMNS: &str = "key, capabilities, replicas_returned, replicas_accepted, replicas_rejected, last_seen_ms";

fn worker_view(r: &sqlx::sqlite::SqliteRow, online: &std::collections::HashSet<PublicKey>) -> Result<WorkerView> {
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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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
    pub spec: JobSpec,
    pub deadline_ms: u64,
    pub tasks: Vec<PendingTask>,
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

const SUMMARY_COLUMNS: &str = "id, label, kernel, client, state, tasks_total, tasks_verified, tasks_failed, created_at_ms, finished_at_ms, failure";

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` in WAL mode and migrates it.
    pub async fn open(path: &Path) -> Result<Store> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before a result is acknowledged or an event is sent.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin().await?)
    }

    // ---- writes (called by the core inside its transaction) ----

    /// Whether a job with this client signature was already posted.
    pub async fn job_signed(conn: &mut SqliteConnection, signature: &Signature) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE signature = $1")
            .bind(signature.to_hex())
            .fetch_optional(&mut *conn)
            .await?;
        Ok(found.is_some())
    }

    pub async fn insert_job(conn: &mut SqliteConnection, id: JobId, job: &SignedJob, now_ms: u64) -> Result<JobId> {
        let spec_json = serde_json::to_string(&job.spec).expect("spec serializes");
        let deadline_ms = now_ms + job.spec.deadline_secs * 1000;
        let row = sqlx::query(
            "INSERT INTO jobs (id, client, signature, spec_json, label, kernel, state, tasks_total, created_at_ms, deadline_ms)
             VALUES ($9, $1, $2, $3, $4, $5, 'running', $6, $7, $8) RETURNING id",
        )
        .bind(job.client.to_hex())
        .bind(job.signature.to_hex())
        .bind(spec_json)
        .bind(&job.spec.label)
        .bind(job.spec.kernel.display_name())
        .bind(job.spec.tasks.len() as i64)
        .bind(now_ms as i64)
        .bind(deadline_ms as i64)
        .bind(id.0 as i64)
        .fetch_one(&mut *conn)
        .await?;
        let id = JobId(row.get::<i64, _>(0) as u64);
        // One multi-row INSERT per chunk keeps big jobs to a handful of statements.
        for chunk in (0..job.spec.tasks.len() as i64).collect::<Vec<_>>().chunks(400) {
            let mut q = String::from("INSERT INTO tasks (job_id, idx, state) VALUES ");
            for (n, _) in chunk.iter().enumerate() {
                if n > 0 {
                    q.push(',');
                }
                q.push_str(&format!("($1, ${}, 'pending')", n + 2));
            }
            let mut query = sqlx::query(&q).bind(id.0 as i64);
            for idx in chunk {
                query = query.bind(*idx);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(id)
    }

    pub async fn insert_lease(
        conn: &mut SqliteConnection,
        lease: LeaseId,
        task: TaskId,
        worker: &PublicKey,
        now_ms: u64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO replicas (lease_id, job_id, idx, worker, state, assigned_at_ms) VALUES ($1, $2, $3, $4, 'leased', $5)",
        )
        .bind(lease.0 as i64)
        .bind(task.job.0 as i64)
        .bind(i64::from(task.index))
        .bind(worker.to_hex())
        .bind(now_ms as i64)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub async fn record_result(
        conn: &mut SqliteConnection,
        lease: LeaseId,
        output_hash: &Hash32,
        output_len: u64,
        signature: &Signature,
        now_ms: u64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE replicas SET state = 'returned', output_hash = $1, output_len = $2, signature = $3, returned_at_ms = $4
             WHERE lease_id = $5 AND state = 'leased'",
        )
        .bind(output_hash.to_hex())
        .bind(output_len as i64)
        .bind(signature.to_hex())
        .bind(now_ms as i64)
        .bind(lease.0 as i64)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves replicas to `to`, only from states listed in `from`.
    pub async fn set_replica_state(
        conn: &mut SqliteConnection,
        lease: LeaseId,
        from: &[ReplicaState],
        to: ReplicaState,
    ) -> Result<bool> {
        let from_list = from.iter().map(|s| format!("'{}'", replica_state_str(*s))).collect::<Vec<_>>().join(",");
        let q = format!("UPDATE replicas SET state = $1 WHERE lease_id = $2 AND state IN ({from_list})");
        let done = sqlx::query(&q).bind(replica_state_str(to)).bind(lease.0 as i64).execute(&mut *conn).await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn add_lapse(conn: &mut SqliteConnection, task: TaskId) -> Result<()> {
        sqlx::query("UPDATE tasks SET lapses = lapses + 1 WHERE job_id = $1 AND idx = $2")
            .bind(task.job.0 as i64)
            .bind(i64::from(task.index))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Marks a pending task verified. False if it was already decided: a task is never
    /// verified twice.
    pub async fn verify_task(
        conn: &mut SqliteConnection,
        task: TaskId,
        output_hash: &Hash32,
        now_ms: u64,
    ) -> Result<bool> {
        Self::decide_task(conn, task, TaskState::Verified, Some(&output_hash.to_hex()), None, now_ms).await
    }

    /// Marks a pending task failed. False if it was already decided.
    pub async fn fail_task(conn: &mut SqliteConnection, task: TaskId, reason: &str, now_ms: u64) -> Result<bool> {
        Self::decide_task(conn, task, TaskState::Failed, None, Some(reason), now_ms).await
    }

    async fn decide_task(
        conn: &mut SqliteConnection,
        task: TaskId,
        state: TaskState,
        output_hash: Option<&str>,
        failure: Option<&str>,
        now_ms: u64,
    ) -> Result<bool> {
        let (state, counter) = match state {
            TaskState::Verified => ("verified", "tasks_verified"),
            TaskState::Failed => ("failed", "tasks_failed"),
            TaskState::Pending => {
                return Err(Error::Corrupt("a task cannot be decided back to pending".into()));
            }
        };
        let done = sqlx::query(
            "UPDATE tasks SET state = $1, output_hash = $2, failure = $3, decided_at_ms = $4
             WHERE job_id = $5 AND idx = $6 AND state = 'pending'",
        )
        .bind(state)
        .bind(output_hash)
        .bind(failure)
        .bind(now_ms as i64)
        .bind(task.job.0 as i64)
        .bind(i64::from(task.index))
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(&format!("UPDATE jobs SET {counter} = {counter} + 1 WHERE id = $1"))
            .bind(task.job.0 as i64)
            .execute(&mut *conn)
            .await?;
        Ok(true)
    }

    pub async fn finish_job(
        conn: &mut SqliteConnection,
        job: JobId,
        state: JobState,
        failure: Option<&str>,
        now_ms: u64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET state = $1, failure = $2, finished_at_ms = $3 WHERE id = $4 AND state = 'running'",
        )
        .bind(job_state_str(state))
        .bind(failure)
        .bind(now_ms as i64)
        .bind(job.0 as i64)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub async fn upsert_worker(
        conn: &mut SqliteConnection,
        key: &PublicKey,
        caps: &Capabilities,
        now_ms: u64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO workers (key, capabilities, first_seen_ms, last_seen_ms) VALUES ($1, $2, $3, $3)
             ON CONFLICT (key) DO UPDATE SET capabilities = excluded.capabilities, last_seen_ms = excluded.last_seen_ms",
        )
        .bind(key.to_hex())
        .bind(serde_json::to_string(caps).expect("capabilities serialize"))
        .bind(now_ms as i64)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub async fn bump_worker(
        conn: &mut SqliteConnection,
        key: &PublicKey,
        returned: i64,
        accepted: i64,
        rejected: i64,
        now_ms: u64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE workers SET replicas_returned = replicas_returned + $1, replicas_accepted = replicas_accepted + $2,
             replicas_rejected = replicas_rejected + $3, last_seen_ms = $4 WHERE key = $5",
        )
        .bind(returned)
        .bind(accepted)
        .bind(rejected)
        .bind(now_ms as i64)
        .bind(key.to_hex())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Leases left `leased` by a previous run: their workers are gone with the old process.
    pub async fn lapse_orphaned_leases(conn: &mut SqliteConnection) -> Result<u64> {
        let done =
            sqlx::query("UPDATE replicas SET state = 'lapsed' WHERE state = 'leased'").execute(&mut *conn).await?;
        Ok(done.rows_affected())
    }

    // ---- reads ----

    pub async fn next_lease_id(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COALESCE(MAX(lease_id), 0) FROM replicas").fetch_one(&self.pool).await?;
        Ok(row.get::<i64, _>(0) as u64 + 1)
    }

    pub async fn running_jobs(&self) -> Result<Vec<RunningJob>> {
        let rows = sqlx::query("SELECT id, spec_json, deadline_ms FROM jobs WHERE state = 'running' ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let id = JobId(row.get::<i64, _>(0) as u64);
            let spec: JobSpec =
                serde_json::from_str(row.get::<&str, _>(1)).map_err(|e| Error::Corrupt(e.to_string()))?;
            let deadline_ms = ms(row.get(2));
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
            jobs.push(RunningJob { id, spec, deadline_ms, tasks });
        }
        Ok(jobs)
    }

    fn summary_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<JobSummary> {
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

    pub async fn job_detail(&self, id: JobId) -> Result<Option<JobDetail>> {
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
        let replica_rows =
            sqlx::query("SELECT idx, worker, state, output_hash FROM replicas WHERE job_id = $1 ORDER BY lease_id")
                .bind(id.0 as i64)
                .fetch_all(&self.pool)
                .await?;
        for r in &replica_rows {
            let idx = r.get::<i64, _>(0) as usize;
            if let Some(task) = tasks.get_mut(idx) {
                task.replicas.push(ReplicaView {
                    worker: parse(r.get::<&str, _>(1), "worker key")?,
                    state: replica_state(r.get::<&str, _>(2))?,
                    output_hash: r.get::<Option<&str>, _>(3).map(|h| parse(h, "output hash")).transpose()?,
                });
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
        let n: i64 =
            sqlx::query_scalar("SELECT COALESCE(SUM(tasks_verified), 0) FROM jobs").fetch_one(&self.pool).await?;
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
            "SELECT worker, output_hash, output_len, signature, state FROM replicas
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
                    rejected: r.get::<&str, _>(4) == "rejected",
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
             WHERE r.job_id = $1 AND r.state = 'rejected' AND r.signature IS NOT NULL AND t.state = 'verified'
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
            out.extend(spec.tasks.iter().flat_map(|t| t.inputs.iter().copied()));
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
