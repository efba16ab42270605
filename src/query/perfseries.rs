//! One perf key of one test over time: every value of the key in the runs
//! a [`Filter`] keeps (test name, machine, kernel, ...), newest run first,
//! with the run's finished time, job, machine and kernel, for `tko serve`'s
//! history plots. And the perf keys a test has, to offer them. One
//! statement each, through the same filter planning as the exports.

use super::plan::{
    col, float, job_conds, newest_tests_first, perf_keys_plan, test_conds, ts, ColType, Dialect,
    Plan, Sql,
};
use super::{Error, Filter, Warehouse};
use serde::Serialize;

/// One value of the key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfPoint {
    /// The run's finished time (`YYYY-MM-DD HH:MM:SS` UTC).
    pub time: Option<String>,
    /// Job tag.
    pub job: String,
    /// Machine.
    pub machine: Option<String>,
    /// Kernel (base version).
    pub kernel: Option<String>,
    /// Iteration number.
    pub iteration: Option<i64>,
    /// The value (finite; NaN and infinities are left out).
    pub value: f64,
}

fn plan(f: &Filter, key: &str, limit: u64, d: Dialect) -> Result<Plan, Error> {
    let mut q = Sql::new(d);
    q.push(&format!(
        "SELECT j.tag, m.hostname, k.base, {}, r.iteration, {} \
         FROM tko_tests t JOIN tko_jobs j ON j.job_idx = t.job_idx \
         JOIN tko_machines m ON m.machine_idx = j.machine_idx \
         JOIN tko_kernels k ON k.kernel_idx = t.kernel_idx \
         JOIN tko_status s ON s.status_idx = t.status \
         JOIN tko_iteration_result r ON r.test_idx = t.test_idx WHERE r.attribute = ",
        ts(d, "t.finished_time"),
        float(d, "r.value"),
    ));
    q.lit(key)?;
    job_conds(&mut q, f, false)?;
    test_conds(&mut q, f, true)?;
    q.push(&newest_tests_first(d));
    q.push(&format!(", r.iteration LIMIT {limit}"));
    Ok(Plan {
        sql: q.text,
        params: q.params,
        columns: vec![
            col("job_tag", ColType::Text),
            col("machine", ColType::Text),
            col("kernel", ColType::Text),
            col("finished_time", ColType::Text),
            col("iteration", ColType::Int),
            col("value", ColType::Float),
        ],
        pivot: None,
    })
}

impl Warehouse {
    /// The finite values of perf key `key` in the tests `f` keeps, newest
    /// run first (by finished time, unfinished last), at most `limit`.
    pub fn perf_series(
        &mut self,
        f: &Filter,
        key: &str,
        limit: u64,
    ) -> Result<Vec<PerfPoint>, Error> {
        f.validate()?;
        let p = plan(f, key, limit, self.dialect())?;
        let mut out = Vec::new();
        self.rows(&p, &mut |r| {
            let value = r[5].and_then(|v| v.parse::<f64>().ok());
            if let Some(value) = value.filter(|v| v.is_finite()) {
                out.push(PerfPoint {
                    job: r[0].unwrap_or_default().to_owned(),
                    machine: r[1].map(str::to_owned),
                    kernel: r[2].map(str::to_owned),
                    time: r[3].map(str::to_owned),
                    iteration: r[4].and_then(|v| v.parse().ok()),
                    value,
                });
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The distinct perf keys of the tests `f` keeps, in byte order.
    pub fn perf_keys(&mut self, f: &Filter) -> Result<Vec<String>, Error> {
        f.validate()?;
        let p = perf_keys_plan(f, self.dialect())?;
        let mut keys = Vec::new();
        self.rows(&p, &mut |r| {
            keys.push(r[0].unwrap_or_default().to_owned());
            Ok(())
        })?;
        Ok(keys)
    }
}
