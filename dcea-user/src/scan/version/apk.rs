//! apk version ordering, a port of apk-tools' `apk_version_compare` (src/version.c):
//! `digit{.digit}...{letter}{_suffix{N}}...{~hash}{-rN}`, with pre-release suffixes
//! (`_alpha _beta _pre _rc`) before the bare version and post-release ones
//! (`_cvs _svn _git _hg _p`) after it. Invalid versions sort below valid ones, as in apk.

use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Token {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    CommitHash,
    RevisionNo,
    End,
    Invalid,
}

/// Suffix ranks; `NONE` (no suffix) sits between the pre- and post-release ones.
const SUFFIXES: [&str; 10] = ["alpha", "beta", "pre", "rc", "", "cvs", "svn", "git", "hg", "p"];
const SUFFIX_NONE: usize = 4;

struct State<'a> {
    rest: &'a [u8],
    token: Token,
    value: &'a [u8],
    number: u64,
    suffix: usize,
}

impl<'a> State<'a> {
    fn first(s: &'a str) -> Self {
        let mut st = State { rest: s.as_bytes(), token: Token::InitialDigit, value: &[], number: 0, suffix: 0 };
        st.digits();
        st
    }

    fn digits(&mut self) {
        let n = self.rest.iter().take_while(|c| c.is_ascii_digit()).count();
        self.value = &self.rest[..n];
        self.number =
            self.value.iter().fold(0u64, |acc, &c| acc.saturating_mul(10).saturating_add(u64::from(c - b'0')));
        self.rest = &self.rest[n..];
        if n == 0 {
            self.token = Token::Invalid;
        }
    }

    fn span(&mut self, pred: impl Fn(u8) -> bool) {
        let n = self.rest.iter().take_while(|&&c| pred(c)).count();
        self.value = &self.rest[..n];
        self.rest = &self.rest[n..];
    }

    fn next(&mut self) {
        let Some(&c) = self.rest.first() else {
            self.token = Token::End;
            return;
        };
        match c {
            b'a'..=b'z' => {
                if self.token > Token::Digit {
                    self.token = Token::Invalid;
                    return;
                }
                self.value = &self.rest[..1];
                self.rest = &self.rest[1..];
                self.token = Token::Letter;
            }
            b'.' | b'0'..=b'9' => {
                if c == b'.' {
                    if self.token > Token::Digit {
                        self.token = Token::Invalid;
                        return;
                    }
                    self.rest = &self.rest[1..];
                }
                self.token = match self.token {
                    Token::InitialDigit | Token::Digit => Token::Digit,
                    Token::Suffix => Token::SuffixNo,
                    _ => {
                        self.token = Token::Invalid;
                        return;
                    }
                };
                self.digits();
            }
            b'_' => {
                if self.token > Token::SuffixNo {
                    self.token = Token::Invalid;
                    return;
                }
                self.rest = &self.rest[1..];
                self.span(|c| c.is_ascii_lowercase());
                match SUFFIXES.iter().position(|s| !s.is_empty() && s.as_bytes() == self.value) {
                    Some(i) => {
                        self.suffix = i;
                        self.token = Token::Suffix;
                    }
                    None => self.token = Token::Invalid,
                }
            }
            b'~' => {
                if self.token >= Token::CommitHash {
                    self.token = Token::Invalid;
                    return;
                }
                self.rest = &self.rest[1..];
                self.span(|c| c.is_ascii_hexdigit());
                self.token = if self.value.is_empty() { Token::Invalid } else { Token::CommitHash };
            }
            b'-' => {
                if self.token >= Token::RevisionNo || !self.rest.starts_with(b"-r") {
                    self.token = Token::Invalid;
                    return;
                }
                self.rest = &self.rest[2..];
                self.token = Token::RevisionNo;
                self.digits();
            }
            _ => self.token = Token::Invalid,
        }
    }
}

fn token_cmp(a: &State, b: &State) -> Ordering {
    let numeric = |a: &State, b: &State| a.number.cmp(&b.number);
    match a.token {
        // A leading zero makes the digits compare as strings (Gentoo rule).
        Token::Digit if a.value.first() == Some(&b'0') || b.value.first() == Some(&b'0') => a.value.cmp(b.value),
        Token::Digit | Token::InitialDigit | Token::SuffixNo | Token::RevisionNo => numeric(a, b),
        Token::Letter => a.value.first().cmp(&b.value.first()),
        Token::Suffix => a.suffix.cmp(&b.suffix),
        _ => a.value.cmp(b.value),
    }
}

pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut ta, mut tb) = (State::first(a.trim()), State::first(b.trim()));
    while ta.token == tb.token && ta.token < Token::End {
        let r = token_cmp(&ta, &tb);
        if r != Ordering::Equal {
            return r;
        }
        ta.next();
        tb.next();
    }
    if ta.token == tb.token {
        return Ordering::Equal;
    }
    // Equal so far: the longer version is newer unless it continues with a pre-release
    // suffix.
    if ta.token == Token::Suffix && ta.suffix < SUFFIX_NONE {
        return Ordering::Less;
    }
    if tb.token == Token::Suffix && tb.suffix < SUFFIX_NONE {
        return Ordering::Greater;
    }
    tb.token.cmp(&ta.token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    /// Cases from apk-tools' test/version.data and the Alpine package policy.
    #[test]
    fn table() {
        let cases = [
            ("1.6-r0", "1.6_rc1-r0", Greater),
            ("1.6_rc1-r0", "1.6_rc2-r0", Less),
            ("1.0_alpha", "1.0_beta", Less),
            ("1.0_beta", "1.0_pre", Less),
            ("1.0_pre", "1.0_rc", Less),
            ("1.0_rc", "1.0", Less),
            ("1.0", "1.0_cvs", Less),
            ("1.0_cvs", "1.0_svn", Less),
            ("1.0_svn", "1.0_git", Less),
            ("1.0_git", "1.0_hg", Less),
            ("1.0_hg", "1.0_p", Less),
            ("1.0_p1", "1.0_p2", Less),
            ("1.0-r0", "1.0-r1", Less),
            ("1.0-r9", "1.0-r10", Less),
            ("1.0", "1.0-r0", Less),
            ("1.0a", "1.0b", Less),
            ("1.0", "1.0a", Less),
            ("1.0.1", "1.0a", Greater),
            ("2.36.1-r0", "2.36.1-r0", Equal),
            ("3.1.4-r5", "3.1.4-r6", Less),
            ("1.2.10", "1.2.9", Greater),
            ("1.01", "1.1", Less), // leading zero: string comparison
            ("1.0~abc", "1.0~abd", Less),
            ("1.0~abc-r1", "1.0-r1", Greater),
            ("1.0-r1", "1.0_bogus", Greater), // invalid sorts lower
            ("3.0.15-r0", "3.0.8-r0", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
