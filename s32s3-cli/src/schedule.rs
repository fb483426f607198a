//! The daemon's schedule: standard 5-field cron (minute hour day-of-month month day-of-week), in UTC.

use std::str::FromStr as _;

use chrono::{DateTime, Utc};

/// A parsed cron schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: croner::Cron,
    text: String,
}

impl Schedule {
    /// Parses a standard 5-field cron expression (no seconds field).
    pub fn parse(text: &str) -> Result<Self, String> {
        // The macros Kubernetes CronJobs accept too (the chart passes the same schedule to both).
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields = expanded.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "{text:?} has {fields} fields; a standard cron schedule has 5 (minute hour day month weekday)"
            ));
        }
        let cron = croner::Cron::from_str(expanded)
            .map_err(|e| format!("{text:?} is not a valid cron schedule: {e}"))?;
        Ok(Self { cron, text: text.to_owned() })
    }

    /// The first time strictly after `after` that matches.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The expression as given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn next_runs() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 10, 15, 30).unwrap();
        let every_minute = Schedule::parse("* * * * *").unwrap();
        assert_eq!(every_minute.next_after(t), Some(Utc.with_ymd_and_hms(2026, 11, 26, 10, 16, 0).unwrap()));
        let nightly = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(nightly.next_after(t), Some(Utc.with_ymd_and_hms(2026, 11, 27, 2, 30, 0).unwrap()));
        let daily = Schedule::parse("@daily").unwrap();
        assert_eq!(daily.next_after(t), Some(Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()));
        assert_eq!(daily.text(), "@daily");
        let sundays = Schedule::parse("0 4 * * 0").unwrap();
        assert_eq!(sundays.next_after(t), Some(Utc.with_ymd_and_hms(2026, 11, 29, 4, 0, 0).unwrap()));
    }

    #[test]
    fn rejects_bad_schedules() {
        for bad in ["", "* * * *", "* * * * * *", "61 * * * *", "every day"] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
    }
}
