//! Medians, ranges and the markdown tables of the peer benchmark.

/// Samples of one configuration on one loop, one per round (ns per operation); a run that
/// failed is NaN, so the rounds stay paired, and is left out of medians and ranges.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn median(&self) -> f64 {
        let mut v: Vec<f64> = self.0.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn range(&self) -> (f64, f64) {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }
}

/// Added cost of `with` over `base`: the difference of the medians, and the range of the
/// per-round differences (each round's runs are back to back, so drift cancels in those).
pub fn added(with: &Samples, base: &Samples) -> (f64, (f64, f64)) {
    let paired: Vec<f64> = with.0.iter().zip(&base.0).map(|(w, b)| w - b).collect();
    (with.median() - base.median(), Samples(paired).range())
}

/// `a ÷ b`, or a dash when it means nothing (no sample, or a divisor within noise of 0).
pub fn ratio(a: f64, b: f64) -> String {
    if !a.is_finite() || !b.is_finite() || b <= 0.0 {
        return "—".into();
    }
    format!("{:.2}", a / b)
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn signed(x: f64) -> String {
    if x.is_finite() && x >= 0.0 { format!("+{}", num(x)) } else { num(x) }
}

/// One loop's results: the four configurations in the order none, dcea, peer, floor.
pub struct LoopResult<'a> {
    pub title: String,
    pub unit: &'a str,
    pub peer_file: &'a str,
    pub samples: [Samples; 4],
}

pub const CONFIG_NAMES: [&str; 4] = ["no agent", "dcea monitor", "bpftrace peer", "empty floor"];

/// Added costs over no agent: (dcea, peer, floor) medians.
pub fn added_costs(r: &LoopResult) -> (f64, f64, f64) {
    let none = &r.samples[0];
    (added(&r.samples[1], none).0, added(&r.samples[2], none).0, added(&r.samples[3], none).0)
}

pub fn print_loop(r: &LoopResult) {
    println!("\n### {} ({})\n", r.title, r.unit);
    println!("| configuration | median | range | added cost (per-round range) |");
    println!("|---|---|---|---|");
    for (i, name) in CONFIG_NAMES.iter().enumerate() {
        let s = &r.samples[i];
        let (lo, hi) = s.range();
        let name = match i {
            2 => format!("{name} (`{}.bt`)", r.peer_file),
            3 => format!("{name} (`floor-{}.bt`)", r.peer_file),
            _ => name.to_string(),
        };
        let add = if i == 0 {
            "—".to_string()
        } else {
            let (a, (alo, ahi)) = added(s, &r.samples[0]);
            format!("{} ({}…{})", signed(a), signed(alo), signed(ahi))
        };
        println!("| {name} | {} | {}–{} | {add} |", num(s.median()), num(lo), num(hi));
    }
    let (dcea, peer, floor) = added_costs(r);
    println!(
        "\ndcea's added cost ÷ the peer's: **{}**; dcea's added cost ÷ the floor's: **{}** (peer ÷ floor: {})",
        ratio(dcea, peer),
        ratio(dcea, floor),
        ratio(peer, floor)
    );
}

pub fn print_summary(results: &[LoopResult]) {
    println!("\n### Summary (added cost over no agent, medians)\n");
    println!("| loop | dcea | bpftrace peer | empty floor | dcea ÷ peer | dcea ÷ floor |");
    println!("|---|---|---|---|---|---|");
    for r in results {
        let (dcea, peer, floor) = added_costs(r);
        println!(
            "| {} ({}) | {} | {} | {} | {} | {} |",
            r.title,
            r.unit,
            signed(dcea),
            signed(peer),
            signed(floor),
            ratio(dcea, peer),
            ratio(dcea, floor)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = Samples(vec![3.0, 1.0, 2.0]);
        assert_eq!(s.median(), 2.0);
        assert_eq!(s.range(), (1.0, 3.0));
        assert_eq!(Samples(vec![1.0, 4.0]).median(), 2.5);
        assert!(Samples(vec![]).median().is_nan());
        let failed = Samples(vec![5.0, f64::NAN, 1.0]);
        assert_eq!(failed.median(), 3.0);
        assert_eq!(failed.range(), (1.0, 5.0));
    }

    #[test]
    fn added_pairs_rounds() {
        let none = Samples(vec![10.0, 20.0]);
        let with = Samples(vec![15.0, 21.0]);
        let (median, range) = added(&with, &none);
        assert_eq!(median, 3.0);
        assert_eq!(range, (1.0, 5.0));
    }

    #[test]
    fn ratio_refuses_meaningless_divisors() {
        assert_eq!(ratio(3.0, 2.0), "1.50");
        assert_eq!(ratio(3.0, 0.0), "—");
        assert_eq!(ratio(3.0, -1.0), "—");
        assert_eq!(ratio(f64::NAN, 1.0), "—");
    }
}
