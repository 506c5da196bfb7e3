//! rpm version ordering: `[epoch:]version[-release]`, each part compared with a port of
//! rpm's `rpmvercmp` (rpmio/rpmvercmp.c), including `~` (sorts before everything) and `^`
//! (sorts after the end of the string but before any other segment).

use std::cmp::Ordering;

fn split_evr(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if e.bytes().all(|b| b.is_ascii_digit()) => (e.parse().unwrap_or(0), rest),
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((ver, rel)) => (epoch, ver, rel),
        None => (epoch, rest, ""),
    }
}

/// rpmvercmp on one segment string.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        // Tilde: the side with it is older.
        match (a.get(i) == Some(&b'~'), b.get(j) == Some(&b'~')) {
            (true, true) => {
                i += 1;
                j += 1;
                continue;
            }
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        // Caret: newer than the end of the other string, older than any other segment.
        match (a.get(i) == Some(&b'^'), b.get(j) == Some(&b'^')) {
            (true, true) => {
                i += 1;
                j += 1;
                continue;
            }
            (true, false) => {
                return if j >= b.len() { Ordering::Greater } else { Ordering::Less };
            }
            (false, true) => {
                return if i >= a.len() { Ordering::Less } else { Ordering::Greater };
            }
            _ => {}
        }
        if i >= a.len() || j >= b.len() {
            break;
        }
        let (si, sj) = (i, j);
        let numeric = a[i].is_ascii_digit();
        let class = |c: u8| {
            if numeric { c.is_ascii_digit() } else { c.is_ascii_alphabetic() }
        };
        while i < a.len() && class(a[i]) {
            i += 1;
        }
        while j < b.len() && class(b[j]) {
            j += 1;
        }
        let (mut sa, mut sb) = (&a[si..i], &b[sj..j]);
        if sb.is_empty() {
            // Different segment types: numeric is newer.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        if numeric {
            while sa.first() == Some(&b'0') {
                sa = &sa[1..];
            }
            while sb.first() == Some(&b'0') {
                sb = &sb[1..];
            }
            match sa.len().cmp(&sb.len()) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        match sa.cmp(sb) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, va, ra) = split_evr(a);
    let (eb, vb, rb) = split_evr(b);
    ea.cmp(&eb).then_with(|| rpmvercmp(va, vb)).then_with(|| {
        // A missing release matches any release (as rpm does for dependency ranges).
        if ra.is_empty() || rb.is_empty() { Ordering::Equal } else { rpmvercmp(ra, rb) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    /// Cases from rpm's own test suite (tests/rpmvercmp.at).
    #[test]
    fn rpmvercmp_table() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0.1", Equal),
            ("2.0", "2.0.1", Less),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("5.5p1", "5.5.p1", Equal),
            ("10b2", "10a1", Greater),
            ("1.0aa", "1.0a", Greater),
            ("6.0.rc1", "6.0", Greater),
            ("10.0001", "10.1", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.0^20160101", "1.0.1", Less),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0^git1~pre", "1.0^git1", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn epoch_and_release() {
        assert_eq!(compare("1:1.0-1", "2.0-1"), Greater);
        assert_eq!(compare("0:1.0-1", "1.0-1"), Equal);
        assert_eq!(compare("2.34-60.el9", "2.34-100.el9"), Less);
        assert_eq!(compare("2.34-60.el9", "2.34-60.el9_2.7"), Less);
    }
}
