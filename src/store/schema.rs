//! The numbered DDL files of `schema/<dialect>/NNN_name.sql`, embedded with
//! `include_str!`, and the list of tables `status` counts. The backends apply
//! them (each migration in one transaction, recorded in `tko_schema_version`);
//! this module runs no SQL itself, but decides which migrations to run
//! ([`apply_pending`]).

use super::Error;

/// One numbered schema file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// `NNN` of the file name.
    pub version: u32,
    /// The name after `NNN_`.
    pub name: &'static str,
    /// The DDL.
    pub sql: &'static str,
}

/// PostgreSQL migrations, in order.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../schema/postgres/001_init.sql"),
    },
    Migration {
        version: 2,
        name: "scan_state",
        sql: include_str!("../../schema/postgres/002_scan_state.sql"),
    },
    Migration {
        version: 3,
        name: "job_machines",
        sql: include_str!("../../schema/postgres/003_job_machines.sql"),
    },
    Migration {
        version: 4,
        name: "read_at",
        sql: include_str!("../../schema/postgres/004_read_at.sql"),
    },
    Migration {
        version: 5,
        name: "test_information",
        sql: include_str!("../../schema/postgres/005_test_information.sql"),
    },
    Migration {
        version: 6,
        name: "perf_cache",
        sql: include_str!("../../schema/postgres/006_perf_cache.sql"),
    },
    Migration {
        version: 7,
        name: "scan_listing",
        sql: include_str!("../../schema/postgres/007_scan_listing.sql"),
    },
];

/// SQLite migrations, in order (same versions as [`POSTGRES`]).
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../schema/sqlite/001_init.sql"),
    },
    Migration {
        version: 2,
        name: "scan_state",
        sql: include_str!("../../schema/sqlite/002_scan_state.sql"),
    },
    Migration {
        version: 3,
        name: "job_machines",
        sql: include_str!("../../schema/sqlite/003_job_machines.sql"),
    },
    Migration {
        version: 4,
        name: "read_at",
        sql: include_str!("../../schema/sqlite/004_read_at.sql"),
    },
    Migration {
        version: 5,
        name: "test_information",
        sql: include_str!("../../schema/sqlite/005_test_information.sql"),
    },
    Migration {
        version: 6,
        name: "perf_cache",
        sql: include_str!("../../schema/sqlite/006_perf_cache.sql"),
    },
    Migration {
        version: 7,
        name: "scan_listing",
        sql: include_str!("../../schema/sqlite/007_scan_listing.sql"),
    },
];

/// The newest schema version this build knows.
pub fn latest(migrations: &[Migration]) -> u32 {
    migrations.last().map_or(0, |m| m.version)
}

/// Applies the migrations a database at version `current` (`None`: no
/// schema yet) still needs, in order, through `run` (which executes one
/// migration's DDL and records it in `tko_schema_version`, inside the
/// caller's transaction); returns the versions applied. Refuses a database
/// without the schema when `require_init` ([`Error::NotInitialized`]) and
/// one newer than this build ([`Error::TooNew`]) before running anything.
pub(crate) fn apply_pending<E>(
    migrations: &'static [Migration],
    current: Option<u32>,
    require_init: bool,
    mut run: impl FnMut(&Migration) -> Result<(), E>,
) -> Result<Vec<u32>, Error>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let latest = latest(migrations);
    match current {
        None if require_init => return Err(Error::NotInitialized),
        Some(v) if v > latest => {
            return Err(Error::TooNew {
                found: v,
                supported: latest,
            })
        }
        _ => {}
    }
    let mut applied = Vec::new();
    for m in migrations {
        if current.is_some_and(|v| m.version <= v) {
            continue;
        }
        run(m).map_err(|e| Error::Migrate {
            version: m.version,
            name: m.name,
            source: Box::new(e),
        })?;
        applied.push(m.version);
    }
    Ok(applied)
}

/// Every table of the schema, in the order `status` lists them.
pub const TABLES: &[&str] = &[
    "tko_schema_version",
    "tko_status",
    "tko_machines",
    "tko_kernels",
    "tko_patches",
    "tko_jobs",
    "tko_job_keyvals",
    "tko_tests",
    "tko_test_attributes",
    "tko_iteration_attributes",
    "tko_iteration_result",
    "tko_test_labels",
    "tko_test_labels_tests",
    "tko_ingest_ledger",
    "tko_diagnostics",
    "tko_scan_state",
    "tko_job_machines",
    "tko_test_information",
    "tko_perf_cache_kernels",
    "tko_perf_cache",
    "tko_scan_listing",
];

/// Tables added after version 1, with the version that added them.
const ADDED_LATER: &[(&str, u32)] = &[
    ("tko_scan_state", 2),
    ("tko_job_machines", 3),
    ("tko_test_information", 5),
    ("tko_perf_cache_kernels", 6),
    ("tko_perf_cache", 6),
    ("tko_scan_listing", 7),
];

/// The tables that exist at schema `version`, in [`TABLES`] order.
pub fn tables_at(version: u32) -> impl Iterator<Item = &'static str> {
    TABLES.iter().copied().filter(move |t| {
        ADDED_LATER
            .iter()
            .find(|(name, _)| name == t)
            .is_none_or(|(_, since)| *since <= version)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::*;
    use std::collections::BTreeMap;

    #[test]
    fn apply_pending_decides_what_to_run() {
        const TWO: &[Migration] = &[
            Migration {
                version: 1,
                name: "a",
                sql: "",
            },
            Migration {
                version: 2,
                name: "b",
                sql: "",
            },
        ];
        let ok = |_: &Migration| Ok::<(), std::io::Error>(());
        assert_eq!(apply_pending(TWO, None, false, ok).unwrap(), vec![1, 2]);
        assert_eq!(apply_pending(TWO, Some(1), true, ok).unwrap(), vec![2]);
        assert!(apply_pending(TWO, Some(2), true, ok).unwrap().is_empty());
        assert!(matches!(
            apply_pending(TWO, None, true, ok),
            Err(Error::NotInitialized)
        ));
        let mut ran = 0;
        let r = apply_pending(TWO, Some(3), false, |_| {
            ran += 1;
            Ok::<(), std::io::Error>(())
        });
        assert!(matches!(
            r,
            Err(Error::TooNew {
                found: 3,
                supported: 2
            })
        ));
        assert_eq!(ran, 0);
        let r = apply_pending(TWO, Some(1), false, |_| Err(std::io::Error::other("boom")));
        assert!(matches!(
            r,
            Err(Error::Migrate {
                version: 2,
                name: "b",
                ..
            })
        ));
    }

    /// Column names per `CREATE TABLE` of a DDL file (one column per line).
    fn table_columns(sql: &str) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        let mut cur: Option<(String, Vec<String>)> = None;
        for line in sql.lines() {
            let l = line.trim();
            if let Some(rest) = l.strip_prefix("CREATE TABLE ") {
                let name = rest.split_whitespace().next().expect("table name");
                cur = Some((name.to_string(), Vec::new()));
            } else if l.starts_with(");") {
                if let Some((n, c)) = cur.take() {
                    out.insert(n, c);
                }
            } else if let Some((_, cols)) = cur.as_mut() {
                let word = l.split_whitespace().next().unwrap_or("");
                if !word.is_empty() && word != "UNIQUE" && word != "PRIMARY" {
                    cols.push(word.to_string());
                }
            }
        }
        out
    }

    fn all(migrations: &[Migration]) -> BTreeMap<String, Vec<String>> {
        let mut m = BTreeMap::new();
        for mig in migrations {
            m.extend(table_columns(mig.sql));
        }
        m
    }

    #[test]
    fn row_structs_match_both_dialects() {
        // (table, COLUMNS, columns the database generates itself)
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("tko_machines", MachineRow::COLUMNS, &["machine_idx"]),
            ("tko_kernels", KernelRow::COLUMNS, &["kernel_idx"]),
            ("tko_patches", PatchRow::COLUMNS, &[]),
            ("tko_jobs", JobRow::COLUMNS, &["job_idx"]),
            ("tko_tests", TestRow::COLUMNS, &[]),
            ("tko_test_attributes", TestAttributeRow::COLUMNS, &["id"]),
            (
                "tko_iteration_attributes",
                IterationAttributeRow::COLUMNS,
                &[],
            ),
            ("tko_iteration_result", IterationResultRow::COLUMNS, &[]),
            ("tko_job_keyvals", JobKeyvalRow::COLUMNS, &["id"]),
            ("tko_diagnostics", DiagnosticRow::COLUMNS, &[]),
            ("tko_test_information", InformationRow::COLUMNS, &[]),
        ];
        let pg = all(POSTGRES);
        let lite = all(SQLITE);
        assert_eq!(pg, lite, "dialects disagree on columns");
        for (table, cols, generated) in cases {
            let mut expected: Vec<&str> = cols.to_vec();
            expected.extend_from_slice(generated);
            expected.sort_unstable();
            let mut actual: Vec<&str> = pg[*table].iter().map(String::as_str).collect();
            actual.sort_unstable();
            assert_eq!(actual, expected, "{table}");
        }
        let names: Vec<&str> = pg.keys().map(String::as_str).collect();
        let mut tables = TABLES.to_vec();
        tables.sort_unstable();
        assert_eq!(names, tables);
    }

    #[test]
    fn versions_are_numbered_in_order() {
        for set in [POSTGRES, SQLITE] {
            for (i, m) in set.iter().enumerate() {
                assert_eq!(m.version as usize, i + 1);
            }
        }
        assert_eq!(latest(POSTGRES), latest(SQLITE));
    }
}
