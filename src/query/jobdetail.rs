//! One job in full, in one statement: the job row, its keyvals, its tests
//! (each with its kernel, status, information message, test attributes,
//! iterations and perf values nested in it) and its parser diagnostics.
//! The statement is a `UNION ALL` of one branch per table, every branch
//! reaching its rows through the job's index (`tko_jobs.tag`,
//! `tko_tests.job_idx`, then the `test_idx` indexes), so a job page costs one
//! round trip however many tests it has, with its plan kept per
//! connection ([`Warehouse::rows_prepared`]: the tag is a parameter). Rows are put in the export order
//! (byte order of text, as `COLLATE "C"`) here, not in SQL.

use super::plan::{col, duration, float, ts, ColType, Column, Dialect, Plan, Sql};
use super::{Error, Warehouse};
use serde::{Serialize, Serializer};
use std::collections::HashMap;

/// The job's own fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobInfo {
    /// Job tag.
    pub tag: String,
    /// Autotest frontend job id.
    pub afe_job_id: Option<i64>,
    /// Label.
    pub label: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Machine (hostname).
    pub machine: Option<String>,
    /// The machine's group (platform).
    pub machine_group: Option<String>,
    /// The machine's owner.
    pub machine_owner: Option<String>,
    /// Queued (`YYYY-MM-DD HH:MM:SS` UTC).
    pub queued_time: Option<String>,
    /// Started.
    pub started_time: Option<String>,
    /// Finished.
    pub finished_time: Option<String>,
}

/// A job keyval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Keyval {
    /// Key.
    pub key: String,
    /// Value.
    pub value: Option<String>,
}

/// A test attribute or an iteration attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribute {
    /// Name.
    pub attribute: Option<String>,
    /// Value.
    pub value: Option<String>,
}

/// A perf value of an iteration: a JSON number, `{"$float": "inf"}` /
/// `{"$float": "-inf"}` for infinities (as `tko export --format json`),
/// `null` for NaN (stored as NULL).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Perf {
    /// Perf key.
    pub key: Option<String>,
    /// Value.
    #[serde(serialize_with = "perf_value")]
    pub value: Option<f64>,
}

fn perf_value<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    match v {
        Some(x) if x.is_infinite() => {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry("$float", if *x > 0.0 { "inf" } else { "-inf" })?;
            m.end()
        }
        Some(x) if x.is_finite() => s.serialize_f64(*x),
        _ => s.serialize_none(),
    }
}

/// One iteration of a test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Iteration {
    /// Iteration number (from 1).
    pub iteration: Option<i64>,
    /// Iteration attributes, by name.
    pub attributes: Vec<Attribute>,
    /// Perf values, by key.
    pub perf: Vec<Perf>,
}

/// A test's information message (the last one recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Information {
    /// The message.
    pub message: String,
    /// When (`YYYY-MM-DD HH:MM:SS` UTC).
    pub time: Option<String>,
}

/// One test of the job with everything recorded about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestDetail {
    /// Test name.
    pub test: Option<String>,
    /// Subdirectory (`None` for `----`).
    pub subdir: Option<String>,
    /// Status word.
    pub status: String,
    /// Reason.
    pub reason: Option<String>,
    /// Kernel (base version).
    pub kernel: Option<String>,
    /// Kernel hash.
    pub kernel_hash: Option<String>,
    /// Started (`YYYY-MM-DD HH:MM:SS` UTC).
    pub started_time: Option<String>,
    /// Finished.
    pub finished_time: Option<String>,
    /// Finished minus started, in seconds.
    pub duration_s: Option<i64>,
    /// The last information message, if any.
    pub information: Option<Information>,
    /// Test attributes, by name then value.
    pub attributes: Vec<Attribute>,
    /// Iterations, in order, with their attributes and perf values.
    pub iterations: Vec<Iteration>,
}

/// A parser diagnostic of the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// File, relative to the job directory.
    pub file: Option<String>,
    /// Line (from 1).
    pub line: Option<i64>,
    /// `warning` or `error`.
    pub severity: String,
    /// Message.
    pub message: Option<String>,
}

/// Everything about one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    /// The job.
    pub job: JobInfo,
    /// Job keyvals, by key.
    pub keyvals: Vec<Keyval>,
    /// Tests, in load order (test id).
    pub tests: Vec<TestDetail>,
    /// Parser diagnostics, by file, line, severity, message.
    pub diagnostics: Vec<Diagnostic>,
}

/// Statement columns: kind, two integers, [`TEXTS`] texts, one float.
const TEXTS: usize = 10;

/// The statement (see the module documentation). Row kinds: `j` job, `k`
/// keyval, `t` test, `a` test attribute, `i` iteration attribute, `p`
/// perf value, `d` diagnostic.
fn plan(tag: &str, d: Dialect) -> Result<Plan, Error> {
    let mut q = Sql::bound(d);
    let (bigint, text, float8) = match d {
        Dialect::Postgres => ("NULL::bigint", "NULL::text", "NULL::float8"),
        Dialect::Sqlite => ("NULL", "NULL", "NULL"),
    };
    // A branch: kind, n1, n2, texts (padded with NULL), float, then FROM.
    let branch = |q: &mut Sql,
                  kind: &str,
                  n: [&str; 2],
                  texts: &[String],
                  fl: &str,
                  from: &str|
     -> Result<(), Error> {
        if !q.text.is_empty() {
            q.push(" UNION ALL ");
        }
        q.push(&format!("SELECT '{kind}', {}, {}", n[0], n[1]));
        for i in 0..TEXTS {
            q.push(", ");
            q.push(texts.get(i).map_or(text, String::as_str));
        }
        q.push(&format!(", {fl} {from}"));
        Ok(())
    };
    let job_of = |q: &mut Sql, what: &str| -> Result<(), Error> {
        q.push(&format!(
            " WHERE {what} = (SELECT job_idx FROM tko_jobs WHERE tag = "
        ));
        q.lit(tag)?;
        q.push(")");
        Ok(())
    };
    let s = |v: &str| v.to_owned();
    branch(
        &mut q,
        "j",
        ["j.job_idx", "j.afe_job_id"],
        &[
            s("j.tag"),
            s("j.label"),
            s("j.username"),
            s("m.hostname"),
            s("m.machine_group"),
            s("m.owner"),
            ts(d, "j.queued_time"),
            ts(d, "j.started_time"),
            ts(d, "j.finished_time"),
        ],
        float8,
        "FROM tko_jobs j JOIN tko_machines m ON m.machine_idx = j.machine_idx WHERE j.tag = ",
    )?;
    q.lit(tag)?;
    branch(
        &mut q,
        "k",
        ["kv.id", bigint],
        &[s("kv.key"), s("kv.value")],
        float8,
        "FROM tko_job_keyvals kv",
    )?;
    job_of(&mut q, "kv.job_id")?;
    branch(
        &mut q,
        "t",
        ["t.test_idx", duration(d)],
        &[
            s("t.test"),
            s("t.subdir"),
            s("s.word"),
            s("t.reason"),
            s("k.base"),
            s("k.kernel_hash"),
            ts(d, "t.started_time"),
            ts(d, "t.finished_time"),
            s("ti.message"),
            ts(d, "ti.info_time"),
        ],
        float8,
        "FROM tko_tests t JOIN tko_kernels k ON k.kernel_idx = t.kernel_idx \
         JOIN tko_status s ON s.status_idx = t.status \
         LEFT JOIN tko_test_information ti ON ti.test_idx = t.test_idx",
    )?;
    job_of(&mut q, "t.job_idx")?;
    branch(
        &mut q,
        "a",
        ["a.test_idx", bigint],
        &[s("a.attribute"), s("a.value")],
        float8,
        "FROM tko_tests t JOIN tko_test_attributes a ON a.test_idx = t.test_idx",
    )?;
    job_of(&mut q, "t.job_idx")?;
    branch(
        &mut q,
        "i",
        ["a.test_idx", "a.iteration"],
        &[s("a.attribute"), s("a.value")],
        float8,
        "FROM tko_tests t JOIN tko_iteration_attributes a ON a.test_idx = t.test_idx",
    )?;
    job_of(&mut q, "t.job_idx")?;
    branch(
        &mut q,
        "p",
        ["r.test_idx", "r.iteration"],
        &[s("r.attribute")],
        &float(d, "r.value"),
        "FROM tko_tests t JOIN tko_iteration_result r ON r.test_idx = t.test_idx",
    )?;
    job_of(&mut q, "t.job_idx")?;
    branch(
        &mut q,
        "d",
        ["dg.line", bigint],
        &[s("dg.file"), s("dg.severity"), s("dg.message")],
        float8,
        "FROM tko_diagnostics dg",
    )?;
    job_of(&mut q, "dg.job_idx")?;
    let columns: Vec<Column> = [col("kind", ColType::Text)]
        .into_iter()
        .chain(["n1", "n2"].map(|n| col(n, ColType::Int)))
        .chain((0..TEXTS).map(|i| col(&format!("t{i}"), ColType::Text)))
        .chain([col("value", ColType::Float)])
        .collect();
    Ok(Plan {
        sql: q.text,
        params: q.params,
        columns,
        pivot: None,
    })
}

/// Text order of optional values: NULL first (as `COALESCE(x, '')`).
fn key(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or_default()
}

impl Warehouse {
    /// Job `tag` in full (see [`JobDetail`]), or `None` when there is no
    /// such job; one statement.
    pub fn job_detail(&mut self, tag: &str) -> Result<Option<JobDetail>, Error> {
        let p = plan(tag, self.dialect())?;
        let mut job: Option<JobInfo> = None;
        let mut keyvals: Vec<(i64, Keyval)> = Vec::new();
        let mut tests: Vec<(i64, TestDetail)> = Vec::new();
        // (test id, iteration attribute?, iteration, attribute)
        let mut attrs: Vec<(i64, bool, Option<i64>, Attribute)> = Vec::new();
        let mut perf: Vec<(i64, Option<i64>, Perf)> = Vec::new();
        let mut diagnostics: Vec<Diagnostic> = Vec::new();
        self.rows_prepared(&p, &mut |r| {
            let int = |i: usize| r[i].and_then(|v| v.parse::<i64>().ok());
            let t = |i: usize| r[3 + i].map(str::to_owned);
            match r[0] {
                Some("j") => {
                    job = Some(JobInfo {
                        tag: t(0).unwrap_or_default(),
                        afe_job_id: int(2),
                        label: t(1),
                        user: t(2),
                        machine: t(3),
                        machine_group: t(4),
                        machine_owner: t(5),
                        queued_time: t(6),
                        started_time: t(7),
                        finished_time: t(8),
                    })
                }
                Some("k") => keyvals.push((
                    int(1).unwrap_or_default(),
                    Keyval {
                        key: t(0).unwrap_or_default(),
                        value: t(1),
                    },
                )),
                Some("t") => tests.push((
                    int(1).unwrap_or_default(),
                    TestDetail {
                        test: t(0),
                        subdir: t(1),
                        status: t(2).unwrap_or_default(),
                        reason: t(3),
                        kernel: t(4),
                        kernel_hash: t(5),
                        started_time: t(6),
                        finished_time: t(7),
                        duration_s: int(2),
                        information: t(8).map(|message| Information {
                            message,
                            time: t(9),
                        }),
                        attributes: Vec::new(),
                        iterations: Vec::new(),
                    },
                )),
                Some(k @ ("a" | "i")) => attrs.push((
                    int(1).unwrap_or_default(),
                    k == "i",
                    int(2),
                    Attribute {
                        attribute: t(0),
                        value: t(1),
                    },
                )),
                Some("p") => perf.push((
                    int(1).unwrap_or_default(),
                    int(2),
                    Perf {
                        key: t(0),
                        value: r[3 + TEXTS].and_then(|v| match v {
                            "Infinity" => Some(f64::INFINITY),
                            "-Infinity" => Some(f64::NEG_INFINITY),
                            v => v.parse().ok(),
                        }),
                    },
                )),
                Some("d") => diagnostics.push(Diagnostic {
                    file: t(0),
                    line: int(1),
                    severity: t(1).unwrap_or_default(),
                    message: t(2),
                }),
                _ => {}
            }
            Ok(())
        })?;
        let Some(job) = job else {
            return Ok(None);
        };
        keyvals.sort_by(|(ia, a), (ib, b)| a.key.cmp(&b.key).then(ia.cmp(ib)));
        tests.sort_by_key(|(i, _)| *i);
        let at: HashMap<i64, usize> = tests
            .iter()
            .enumerate()
            .map(|(n, (i, _))| (*i, n))
            .collect();
        attrs.sort_by(|(ta, xa, ia, a), (tb, xb, ib, b)| {
            (ta, xa, ia, key(&a.attribute), key(&a.value)).cmp(&(
                tb,
                xb,
                ib,
                key(&b.attribute),
                key(&b.value),
            ))
        });
        perf.sort_by(|(ta, ia, a), (tb, ib, b)| (ta, ia, key(&a.key)).cmp(&(tb, ib, key(&b.key))));
        let iteration = |t: &mut TestDetail, n: Option<i64>| -> usize {
            match t.iterations.iter().position(|it| it.iteration == n) {
                Some(i) => i,
                None => {
                    t.iterations.push(Iteration {
                        iteration: n,
                        attributes: Vec::new(),
                        perf: Vec::new(),
                    });
                    t.iterations.len() - 1
                }
            }
        };
        for (ti, of_iteration, it, a) in attrs {
            let Some(&n) = at.get(&ti) else { continue };
            let t = &mut tests[n].1;
            if of_iteration {
                let i = iteration(t, it);
                t.iterations[i].attributes.push(a);
            } else {
                t.attributes.push(a);
            }
        }
        for (ti, it, p) in perf {
            let Some(&n) = at.get(&ti) else { continue };
            let t = &mut tests[n].1;
            let i = iteration(t, it);
            t.iterations[i].perf.push(p);
        }
        for (_, t) in &mut tests {
            t.iterations.sort_by_key(|it| it.iteration);
        }
        diagnostics.sort_by(|a, b| {
            (
                key(&a.file),
                a.line.unwrap_or(0),
                &a.severity,
                key(&a.message),
            )
                .cmp(&(
                    key(&b.file),
                    b.line.unwrap_or(0),
                    &b.severity,
                    key(&b.message),
                ))
        });
        Ok(Some(JobDetail {
            job,
            keyvals: keyvals.into_iter().map(|(_, k)| k).collect(),
            tests: tests.into_iter().map(|(_, t)| t).collect(),
            diagnostics,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_every_branch_by_the_tag() {
        for d in [Dialect::Postgres, Dialect::Sqlite] {
            let p = plan("1-a/b", d).unwrap();
            assert_eq!(p.sql.matches(" UNION ALL ").count(), 6, "{}", p.sql);
            let tag_refs = match d {
                Dialect::Postgres => p.sql.matches("tag = $").count(),
                Dialect::Sqlite => p.sql.matches("tag = ?").count(),
            };
            assert_eq!(tag_refs, 7, "{}", p.sql);
            assert_eq!(p.params, vec!["1-a/b".to_owned(); 7]);
            assert!(!p.sql.contains("1-a/b"), "values are parameters");
        }
    }
}
