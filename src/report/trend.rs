//! Pass rate over time: per finished day (UTC), tests passed and failed,
//! accumulated from [`TestRecord`]s with one counter per day (a [`Sink`]
//! for a `tests` export, like [`super::StatsBuilder`]). `tko serve` plots
//! it on its statistics page.

use super::{fails, passes, Cols, RecordSink, TestRecord};
use serde::Serialize;
use std::collections::BTreeMap;

/// One day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Passed tests finished that day.
    pub passed: u64,
    /// Failed tests finished that day.
    pub failed: u64,
    /// passed / (passed + failed), when any.
    pub pass_rate: Option<f64>,
}

/// Builds the per-day series; tests without a finished time are skipped.
#[derive(Default)]
pub struct TrendBuilder {
    cols: Option<Cols>,
    days: BTreeMap<String, (u64, u64)>,
}

impl TrendBuilder {
    /// Counts one record.
    pub fn add(&mut self, r: &TestRecord) {
        let Some(day) = r.finished_time.as_deref().and_then(|t| t.get(..10)) else {
            return;
        };
        let (p, f) = (passes(&r.status), fails(&r.status));
        if p || f {
            let e = self.days.entry(day.to_owned()).or_default();
            e.0 += u64::from(p);
            e.1 += u64::from(f);
        }
    }

    /// The days, oldest first.
    pub fn build(&self) -> Vec<Day> {
        self.days
            .iter()
            .map(|(day, &(passed, failed))| Day {
                day: day.clone(),
                passed,
                failed,
                pass_rate: (passed + failed > 0).then(|| passed as f64 / (passed + failed) as f64),
            })
            .collect()
    }
}

impl RecordSink for TrendBuilder {
    fn cols_slot(&mut self) -> &mut Option<Cols> {
        &mut self.cols
    }

    fn take(&mut self, r: TestRecord) {
        self.add(&r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::rec;

    #[test]
    fn days_count_passes_and_fails_only() {
        let mut b = TrendBuilder::default();
        for (s, t) in [
            ("GOOD", "2011-03-13 10:00:00"),
            ("FAIL", "2011-03-13 11:00:00"),
            ("WARN", "2011-03-13 12:00:00"),
            ("GOOD", "2011-03-14 01:00:00"),
        ] {
            let mut r = rec("a", s, None, "");
            r.finished_time = Some(t.into());
            b.add(&r);
        }
        let d = b.build();
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].passed, d[0].failed, d[0].pass_rate),
            (1, 1, Some(0.5))
        );
        assert_eq!(d[1].pass_rate, Some(1.0));
    }
}
