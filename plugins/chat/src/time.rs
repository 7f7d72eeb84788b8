//! RFC 3339 timestamps without a date library.

/// Formats Unix milliseconds as RFC 3339 UTC with milliseconds, e.g. `2026-11-23T04:05:06.789Z`.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    // Written digit by digit: `format!` costs several times more inside the plugin, once per
    // message sent.
    let mut out = String::with_capacity(24);
    push_digits(&mut out, year, 4);
    out.push('-');
    push_digits(&mut out, month, 2);
    out.push('-');
    push_digits(&mut out, day, 2);
    out.push('T');
    push_digits(&mut out, rem / 3600, 2);
    out.push(':');
    push_digits(&mut out, rem / 60 % 60, 2);
    out.push(':');
    push_digits(&mut out, rem % 60, 2);
    out.push('.');
    push_digits(&mut out, unix_ms % 1000, 3);
    out.push('Z');
    out
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width);
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[start..]).unwrap_or_default());
}

/// Converts days since 1970-01-01 into a proleptic Gregorian `(year, month, day)`.
///
/// Works in 400-year eras (146 097 days) counted from 0000-03-01, so that the leap day is the
/// last day of each shifted year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146_096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year, 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn known_instants() {
        assert_eq!(
            rfc3339_millis(1_795_406_706_789),
            "2026-11-23T04:05:06.789Z"
        );
        assert_eq!(rfc3339_millis(951_827_696_001), "2000-02-29T12:34:56.001Z");
        assert_eq!(rfc3339_millis(946_684_799_999), "1999-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339_millis(1_735_603_200_000),
            "2024-12-31T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_millis(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        // Years past 9999 keep all their digits, as `{:04}` did.
        assert_eq!(
            rfc3339_millis(253_402_300_800_000),
            "10000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn every_day_is_consecutive() {
        // Walk 1970..2100 day by day and check the calendar never skips or repeats.
        let mut prev = civil_from_days(0);
        for d in 1..(130 * 366) {
            let cur = civil_from_days(d);
            let (py, pm, pd) = prev;
            let next_day = cur == (py, pm, pd + 1);
            let next_month = cur == (py, pm + 1, 1) && pm < 12;
            let next_year = cur == (py + 1, 1, 1) && pm == 12 && pd == 31;
            assert!(next_day || next_month || next_year, "{prev:?} -> {cur:?}");
            let leap = py % 4 == 0 && (py % 100 != 0 || py % 400 == 0);
            let month_len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            if !next_day {
                assert_eq!(pd, month_len[(pm - 1) as usize], "{prev:?} -> {cur:?}");
            }
            prev = cur;
        }
    }
}
