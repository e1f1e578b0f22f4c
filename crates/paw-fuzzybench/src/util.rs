//! Deterministic randomness and input-noise helpers shared by the task generators.

/// paw's one seeded PRNG (SplitMix64, `paw_rt::SplitMix64`, no external crate, so the suite
/// never changes because a dependency changed its algorithm) with the draws generators need.
#[derive(Debug, Clone)]
pub struct Rng(paw_rt::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(paw_rt::SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform-enough integer in `0..n` (modulo bias is irrelevant at these sizes).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// Integer in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as usize) as i64
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

/// FNV-1a: stable per-task seed derived from the task name, so adding or
/// reordering tasks never changes the cases of the others.
pub fn seed_of(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// Slot marker in templates. Noise only touches ASCII letters and spaces, so the
/// marker survives and the slot value (the part whose label matters) stays intact.
pub const SLOT: char = '§';

/// Replace each `§` in order with the next value.
pub fn fill(template: &str, values: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut vals = values.iter();
    for c in template.chars() {
        if c == SLOT {
            out.push_str(vals.next().copied().unwrap_or(""));
        } else {
            out.push(c);
        }
    }
    out
}

/// Human noise: casing drift, one transposition typo, doubled spaces, stray
/// surrounding whitespace. Applied to the frame of an input, never to the value
/// the expected output depends on.
pub fn noise(rng: &mut Rng, s: &str) -> String {
    let mut out = match rng.below(100) {
        0..=14 => s.to_lowercase(),
        15..=20 => s.to_uppercase(),
        _ => s.to_string(),
    };
    if rng.chance(20) {
        out = typo(rng, &out);
    }
    if rng.chance(10) {
        out = double_space(rng, &out);
    }
    if rng.chance(8) {
        out = match rng.below(3) {
            0 => format!("  {out}"),
            1 => format!("{out}  "),
            _ => format!(" {out}\n"),
        };
    }
    out
}

/// Only casing and whitespace drift: for inputs where a typo could change meaning
/// (commands, codes).
pub fn light_noise(rng: &mut Rng, s: &str) -> String {
    let mut out = s.to_string();
    if rng.chance(10) {
        out = double_space(rng, &out);
    }
    if rng.chance(10) {
        out = format!("{out}  ");
    }
    out
}

/// Swap two adjacent interior letters of one word of length >= 5.
pub fn typo(rng: &mut Rng, s: &str) -> String {
    let bytes = s.as_bytes();
    let mut words = Vec::new();
    let mut start = None;
    for (i, b) in bytes.iter().enumerate() {
        match (b.is_ascii_alphabetic(), start) {
            (true, None) => start = Some(i),
            (false, Some(st)) => {
                if i - st >= 5 {
                    words.push((st, i));
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(st) = start {
        if bytes.len() - st >= 5 {
            words.push((st, bytes.len()));
        }
    }
    if words.is_empty() {
        return s.to_string();
    }
    let (st, en) = rng.pick(&words);
    // Interior only: first and last letters stay, as with real transpositions.
    let i = st + 1 + rng.below(en - st - 3);
    let mut v = bytes.to_vec();
    v.swap(i, i + 1);
    String::from_utf8(v).unwrap_or_else(|_| s.to_string())
}

fn double_space(rng: &mut Rng, s: &str) -> String {
    let spaces: Vec<usize> = s.match_indices(' ').map(|(i, _)| i).collect();
    if spaces.is_empty() {
        return s.to_string();
    }
    let i = rng.pick(&spaces);
    format!("{}  {}", &s[..i], &s[i + 1..])
}

pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

pub const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

pub fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Day of week, 0 = Sunday (Sakamoto's method).
pub fn weekday(y: i64, m: i64, d: i64) -> usize {
    const T: [i64; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let y = if m < 3 { y - 1 } else { y };
    ((y + y / 4 - y / 100 + y / 400 + T[(m - 1) as usize] + d) % 7) as usize
}

pub fn ordinal(d: i64) -> String {
    let suffix = match (d % 10, d % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{d}{suffix}")
}

/// Random valid calendar date in `y0..=y1`.
pub fn date(rng: &mut Rng, y0: i64, y1: i64) -> (i64, i64, i64) {
    let y = rng.range(y0, y1);
    let m = rng.range(1, 12);
    let d = rng.range(1, days_in_month(y, m));
    (y, m, d)
}

pub fn iso(y: i64, m: i64, d: i64) -> String {
    format!("{y:04}-{m:02}-{d:02}")
}
