//! The start-up report, repeated after every reload: one line per certificate (names, key
//! type, expiry) with a warning when it expires within 14 days and an error once it has
//! expired. (Listener and worker lines come from where they are bound and started.)

use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use crate::tls::certs;
use crate::tls::store::CertStore;

/// Expiring this soon is worth a warning: renewal (certbot, ACME clients) runs at 30 days
/// left, so 14 means it has failed at least twice.
pub const WARN_DAYS: i64 = 14;

/// What the report says of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    Valid { days_left: i64 },
    Soon { days_left: i64 },
    Expired { days_ago: i64 },
}

/// Pure: where a certificate with this notAfter stands at `now` (Unix seconds).
pub fn expiry(not_after: i64, now: i64) -> Expiry {
    let left = not_after - now;
    let days = left.div_euclid(86_400);
    if left < 0 {
        Expiry::Expired { days_ago: -days }
    } else if days < WARN_DAYS {
        Expiry::Soon { days_left: days }
    } else {
        Expiry::Valid { days_left: days }
    }
}

/// Past this many certificates, the valid ones are summed up in one line instead of one each
/// (a store of 10,000 would otherwise flood the log at every reload); warnings and errors are
/// always one line per certificate.
pub const LIST_UP_TO: usize = 50;

/// Logs one line per certificate of `store` (or a summary of the valid ones, for many).
pub fn certificates(store: &CertStore) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let many = store.len() > LIST_UP_TO;
    let mut valid = 0usize;
    let mut soonest: Option<(i64, &str)> = None;
    for entry in store.entries() {
        let s = match certs::summary(&entry.key) {
            Ok(s) => s,
            Err(e) => {
                warn!(cert = %entry.source, "certificate cannot be described: {e}");
                continue;
            }
        };
        let names = s.names.join(",");
        let until = timestamp(s.not_after);
        match expiry(s.not_after, now) {
            Expiry::Valid { .. } if many => {
                valid += 1;
                if soonest.is_none_or(|(t, _)| s.not_after < t) {
                    soonest = Some((s.not_after, &entry.source));
                }
            }
            Expiry::Valid { days_left } => info!(
                cert = %entry.source,
                names = %names,
                key = %s.key_type,
                not_after = %until,
                days_left,
                "certificate"
            ),
            Expiry::Soon { days_left } => warn!(
                cert = %entry.source,
                names = %names,
                key = %s.key_type,
                not_after = %until,
                "certificate expires in {days_left} days: renew it and reload"
            ),
            Expiry::Expired { days_ago } => error!(
                cert = %entry.source,
                names = %names,
                key = %s.key_type,
                not_after = %until,
                "certificate expired {days_ago} days ago: clients refuse it"
            ),
        }
    }
    if let Some((t, source)) = soonest {
        info!(
            certificates = store.len(),
            valid,
            soonest = %source,
            soonest_not_after = %timestamp(t),
            "certificates loaded (listed one by one up to {LIST_UP_TO})"
        );
    }
}

/// `2026-11-24T05:00:00Z` from Unix seconds.
fn timestamp(secs: i64) -> String {
    let mut s = String::new();
    let t = UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    crate::proxy::accesslog::format::push_timestamp(&mut s, t);
    // Whole seconds are enough here.
    s.replace(".000Z", "Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_classes() {
        let day = 86_400;
        let now = 1_800_000_000;
        assert_eq!(expiry(now + 90 * day, now), Expiry::Valid { days_left: 90 });
        assert_eq!(expiry(now + 14 * day, now), Expiry::Valid { days_left: 14 });
        assert_eq!(
            expiry(now + 14 * day - 1, now),
            Expiry::Soon { days_left: 13 }
        );
        assert_eq!(
            expiry(now + 3 * day + 5, now),
            Expiry::Soon { days_left: 3 }
        );
        assert_eq!(expiry(now, now), Expiry::Soon { days_left: 0 });
        assert_eq!(expiry(now - 1, now), Expiry::Expired { days_ago: 1 });
        assert_eq!(expiry(now - 2 * day, now), Expiry::Expired { days_ago: 2 });
    }

    #[test]
    fn timestamps_are_whole_seconds() {
        assert_eq!(timestamp(1_795_496_400), "2026-11-24T05:00:00Z");
    }
}
