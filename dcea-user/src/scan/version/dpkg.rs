//! dpkg version ordering (`[epoch:]upstream[-revision]`), a port of dpkg's `verrevcmp`
//! (lib/dpkg/version.c): `~` sorts before everything, even the end of the string; letters
//! sort before non-letters; digit runs compare numerically.

use std::cmp::Ordering;

struct Parsed<'a> {
    epoch: u64,
    upstream: &'a str,
    revision: &'a str,
}

fn parse(v: &str) -> Parsed<'_> {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    // The revision starts after the last hyphen; an absent revision equals "".
    let (upstream, revision) = match rest.rfind('-') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    Parsed { epoch, upstream, revision }
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(b'~') => -1,
        Some(c) => c as i32 + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let mut first_diff = 0;
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == 0 {
                first_diff = a[i] as i32 - b[j] as i32;
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (parse(a), parse(b));
    a.epoch
        .cmp(&b.epoch)
        .then_with(|| verrevcmp(a.upstream, b.upstream))
        .then_with(|| verrevcmp(a.revision, b.revision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn table_from_dpkg_docs_and_test_suite() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0-1", "1.0-1", Equal),
            ("0:1.0", "1.0", Equal),   // a missing epoch is epoch 0
            ("1:0.1", "2.0", Greater), // the epoch wins over everything
            ("1.0~rc1", "1.0", Less),  // ~ sorts before the end of the string
            ("1.0~~", "1.0~~a", Less),
            ("1.0~~a", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less), // letters sort before non-letters
            ("1.0-1", "1.0-2", Less),
            ("1.0-1", "1.0", Greater), // "" revision is lowest
            ("1.2.10", "1.2.9", Greater),
            ("1.002", "1.2", Equal), // leading zeros do not count
            ("2.36-9+deb12u13", "2.36-9+deb12u14", Less),
            ("2.36-9+deb12u9", "2.36-9+deb12u10", Less),
            ("3.0.19-1~deb12u2", "3.0.19-1", Less),
            ("5.2.15-2+b8", "5.2.15-2", Greater),
            ("1.0-1~bpo12+1", "1.0-1", Less),
            ("2:1.0", "10:0.5", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
