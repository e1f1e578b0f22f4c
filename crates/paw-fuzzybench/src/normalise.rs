//! Normalisation and repair tasks: a canonical value is generated, then rendered
//! in one of many surface forms (or corrupted in a known way); the expected
//! output is the canonical rendering.

use super::util::{date, iso, light_noise, ordinal, weekday, Rng, MONTHS, WEEKDAYS};
use super::{case, Case, Category, Task};

pub fn tasks() -> Vec<Task> {
    let t = |name, spec, gen| Task {
        name,
        category: Category::Normalisation,
        spec,
        gen,
    };
    vec![
        t(
            "json-repair",
            "Fix malformed JSON: repair missing quotes, single quotes, trailing commas, Python-style True/False/None and a missing closing brace. \
             Output the repaired JSON in compact form (no spaces or newlines outside strings), keeping keys in their original order and values unchanged.",
            json_repair,
        ),
        t(
            "date-iso",
            "Convert a date written in any common format to ISO 8601 (YYYY-MM-DD). Output only the date. \
             Slash-separated numbers are month/day/year (US style) unless they start with the year; dot-separated numbers are day.month.year. \
             For a timestamp, output just its date part.",
            date_iso,
        ),
        t(
            "phone-e164",
            "Normalise a phone number to E.164: a plus sign followed by country code and number, digits only (e.g. +14155550132). \
             Numbers without a country code are US numbers (+1). A leading 00 means +, and a trunk prefix written as (0) after the country code is dropped. Output only the number.",
            phone_e164,
        ),
        t(
            "duration-seconds",
            "Convert a duration written in any style (1h 30m, 2 hours and 5 minutes, 1:02:03 as h:mm:ss, ISO 8601 like PT1H30M, 1.5 hours, half an hour) \
             into a whole number of seconds. Output only the integer.",
            duration_seconds,
        ),
        t(
            "data-size-bytes",
            "Convert a data size to a whole number of bytes. Units are case-insensitive and always mean bytes: KB/MB/GB/TB (and kilobytes etc.) are powers of 1000, \
             KiB/MiB/GiB (kibibytes etc.) are powers of 1024. Output only the integer, no separators.",
            data_size_bytes,
        ),
        t(
            "snake-case",
            "Convert an identifier or phrase written in any casing style (camelCase, PascalCase, kebab-case, Title Case, SCREAMING_SNAKE_CASE, dot.case, spaced words) \
             to snake_case: lowercase words joined by single underscores. Output only the identifier.",
            snake_case,
        ),
        t(
            "bool-normalise",
            "Interpret a free-text yes/no answer from a form or survey. Return ONLY true or false (lowercase).",
            bool_normalise,
        ),
        t(
            "number-words",
            "Convert a number written in English words (with or without hyphens, 'and', commas or capital letters) to digits. Output only the integer, no separators.",
            number_words,
        ),
        t(
            "country-iso",
            "Map a country name, in English or the local language, abbreviated or misspelled in case, to its ISO 3166-1 alpha-2 code. Output ONLY the two uppercase letters.",
            country_iso,
        ),
        t(
            "time-24h",
            "Convert a time of day written in any style (3pm, 3:45 PM, 15h45, quarter past seven in the evening, noon, midnight) to 24-hour HH:MM. Output only HH:MM.",
            time_24h,
        ),
    ]
}

/// True when `s` has no whitespace outside string literals (compact JSON).
#[cfg(test)]
pub fn is_compact_json(s: &str) -> bool {
    let mut in_str = false;
    let mut escaped = false;
    for c in s.chars() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
        } else if c == '"' {
            in_str = true;
        } else if c.is_whitespace() {
            return false;
        }
    }
    !in_str
}

/// A JSON document with ordered keys (serde_json's map would sort them).
#[derive(Debug, Clone)]
enum J {
    Str(String),
    Num(String),
    Bool(bool),
    Null,
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Quote {
    Double,
    Single,
    Bare,
}

/// How to (mis)render a document. `Style::default()` is compact valid JSON.
#[derive(Debug, Clone, Copy)]
struct Style {
    keys: Quote,
    strings: Quote,
    python: bool,
    trailing_commas: bool,
    spaced: bool,
    pretty: bool,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            keys: Quote::Double,
            strings: Quote::Double,
            python: false,
            trailing_commas: false,
            spaced: false,
            pretty: false,
        }
    }
}

fn quote(s: &str, q: Quote) -> String {
    match q {
        Quote::Double => format!("\"{s}\""),
        Quote::Single => format!("'{s}'"),
        Quote::Bare => s.to_string(),
    }
}

fn render(j: &J, st: &Style, depth: usize) -> String {
    let (open_nl, item_nl, close_nl) = if st.pretty {
        let ind = "  ".repeat(depth + 1);
        (
            format!("\n{ind}"),
            format!(",\n{ind}"),
            format!("\n{}", "  ".repeat(depth)),
        )
    } else if st.spaced {
        (String::new(), ", ".to_string(), String::new())
    } else {
        (String::new(), ",".to_string(), String::new())
    };
    let colon = if st.spaced || st.pretty { ": " } else { ":" };
    let trail = if st.trailing_commas { "," } else { "" };
    match j {
        J::Str(s) => quote(s, st.strings),
        J::Num(n) => n.clone(),
        J::Bool(b) => match (st.python, b) {
            (true, true) => "True".into(),
            (true, false) => "False".into(),
            (false, b) => b.to_string(),
        },
        J::Null => {
            if st.python {
                "None".into()
            } else {
                "null".into()
            }
        }
        J::Arr(items) if items.is_empty() => "[]".into(),
        J::Obj(items) if items.is_empty() => "{}".into(),
        J::Arr(items) => {
            let body: Vec<String> = items.iter().map(|i| render(i, st, depth + 1)).collect();
            format!("[{open_nl}{}{trail}{close_nl}]", body.join(&item_nl))
        }
        J::Obj(items) => {
            let body: Vec<String> = items
                .iter()
                .map(|(k, v)| format!("{}{colon}{}", quote(k, st.keys), render(v, st, depth + 1)))
                .collect();
            format!("{{{open_nl}{}{trail}{close_nl}}}", body.join(&item_nl))
        }
    }
}

const KEYS: &[&str] = &[
    "name", "age", "tags", "active", "email", "id", "score", "city", "items", "meta", "count",
    "title", "owner", "price", "enabled", "notes",
];
const WORDS: &[&str] = &[
    "Alice",
    "Bob",
    "ml",
    "ai",
    "Berlin",
    "café",
    "blue widget",
    "todo",
    "x",
    "hello world",
    "São Paulo",
    "v2",
    "admin",
    "draft",
];

fn json_scalar(rng: &mut Rng) -> J {
    match rng.below(6) {
        0 | 1 => J::Str(rng.pick(WORDS).to_string()),
        2 => J::Num(rng.range(-5, 5000).to_string()),
        3 => J::Num(format!("{}.{}", rng.range(0, 99), rng.range(1, 9))),
        4 => J::Bool(rng.chance(50)),
        _ => J::Null,
    }
}

fn json_object(rng: &mut Rng, depth: usize) -> J {
    let mut keys: Vec<&str> = KEYS.to_vec();
    rng.shuffle(&mut keys);
    let n = rng.range(
        if depth == 0 { 2 } else { 1 },
        if depth == 0 { 5 } else { 3 },
    ) as usize;
    let items = keys[..n]
        .iter()
        .map(|k| {
            let v = match (depth, rng.below(7)) {
                (0, 0) => J::Arr((0..rng.range(1, 3)).map(|_| json_scalar(rng)).collect()),
                (0, 1) => json_object(rng, depth + 1),
                _ => json_scalar(rng),
            };
            (k.to_string(), v)
        })
        .collect();
    J::Obj(items)
}

fn has_literal(j: &J) -> bool {
    match j {
        J::Bool(_) | J::Null => true,
        J::Arr(v) => v.iter().any(has_literal),
        J::Obj(v) => v.iter().any(|(_, x)| has_literal(x)),
        _ => false,
    }
}

fn json_repair(rng: &mut Rng) -> Case {
    let doc = json_object(rng, 0);
    let expected = render(&doc, &Style::default(), 0);
    let mut st = Style {
        keys: rng.pick(&[Quote::Double, Quote::Single, Quote::Bare, Quote::Bare]),
        strings: rng.pick(&[Quote::Double, Quote::Single]),
        python: has_literal(&doc) && rng.chance(35),
        trailing_commas: rng.chance(40),
        spaced: rng.chance(50),
        pretty: rng.chance(20),
    };
    let drop_brace = rng.chance(25);
    // Every input must be genuinely broken: if nothing above corrupted it, add trailing commas.
    let broken_already = st.keys != Quote::Double
        || (st.strings == Quote::Single && has_string(&doc))
        || st.python
        || st.trailing_commas
        || drop_brace;
    if !broken_already {
        st.trailing_commas = true;
    }
    let mut input = render(&doc, &st, 0);
    if drop_brace {
        // Exactly one brace: the outermost.
        input = input
            .strip_suffix('}')
            .unwrap_or(&input)
            .trim_end()
            .to_string();
    }
    case(input, expected)
}

fn has_string(j: &J) -> bool {
    match j {
        J::Str(_) => true,
        J::Arr(v) => v.iter().any(has_string),
        J::Obj(v) => v.iter().any(|(_, x)| has_string(x)),
        _ => false,
    }
}

fn date_iso(rng: &mut Rng) -> Case {
    let (y, m, d) = date(rng, 1990, 2035);
    let month = MONTHS[(m - 1) as usize];
    let mon = &month[..3];
    let text = match rng.below(12) {
        0 => format!("{y}/{m:02}/{d:02}"),
        1 => format!("{month} {d}, {y}"),
        2 => format!("{d} {month} {y}"),
        3 => format!("{mon} {d} {y}"),
        4 => format!("{m:02}/{d:02}/{y}"),
        5 => format!("{d:02}.{m:02}.{y}"),
        6 => format!("{} of {month}, {y}", ordinal(d)),
        7 => format!("{}, {month} {d}, {y}", WEEKDAYS[weekday(y, m, d)]),
        8 => format!("{y}{m:02}{d:02}"),
        9 => format!("{d}-{mon}-{y}"),
        10 => format!("{} {} {y}", month.to_lowercase(), ordinal(d)),
        _ => format!(
            "{}T{:02}:{:02}:00Z",
            iso(y, m, d),
            rng.range(0, 23),
            rng.range(0, 59)
        ),
    };
    let text = match rng.below(10) {
        0 => text.to_uppercase(),
        1 => text.to_lowercase(),
        _ => text,
    };
    case(light_noise(rng, &text), iso(y, m, d))
}

fn phone_e164(rng: &mut Rng) -> Case {
    let (text, out) = match rng.below(10) {
        0..=5 => {
            let a = rng.range(201, 989);
            let e = rng.range(200, 999);
            let l = format!("{:04}", rng.range(0, 9999));
            let text = match rng.below(8) {
                0 => format!("({a}) {e}-{l}"),
                1 => format!("{a}.{e}.{l}"),
                2 => format!("{a}-{e}-{l}"),
                3 => format!("+1 {a} {e} {l}"),
                4 => format!("1-{a}-{e}-{l}"),
                5 => format!("{a}{e}{l}"),
                6 => format!("+1 ({a}) {e}-{l}"),
                _ => format!("{a} {e} {l}"),
            };
            (text, format!("+1{a}{e}{l}"))
        }
        6 | 7 => {
            // UK: London landline or mobile, always written with the country code.
            let (area, rest) = if rng.chance(50) {
                (
                    "20".to_string(),
                    format!("{:04} {:04}", rng.range(3000, 8999), rng.range(0, 9999)),
                )
            } else {
                (
                    format!("7{}", rng.range(400, 999)),
                    format!("{:06}", rng.range(0, 999_999)),
                )
            };
            let text = match rng.below(3) {
                0 => format!("+44 {area} {rest}"),
                1 => format!("+44 (0){area} {rest}"),
                _ => format!("0044 {area} {rest}"),
            };
            (text, format!("+44{area}{}", rest.replace(' ', "")))
        }
        8 => {
            let sub = format!("{:07}", rng.range(1_000_000, 9_999_999));
            let city = rng.pick(&["30", "40", "89", "221"]);
            let text = match rng.below(3) {
                0 => format!("+49 {city} {sub}"),
                1 => format!("0049 {city} {sub}"),
                _ => format!("+49 (0){city} {sub}"),
            };
            (text, format!("+49{city}{sub}"))
        }
        _ => {
            let first = rng.range(1, 9);
            let pairs: Vec<String> = (0..4).map(|_| format!("{:02}", rng.range(0, 99))).collect();
            let text = match rng.below(3) {
                0 => format!("+33 {first} {}", pairs.join(" ")),
                1 => format!("+33 (0){first} {}", pairs.join(" ")),
                _ => format!("0033 {first}.{}", pairs.join(".")),
            };
            (text, format!("+33{first}{}", pairs.concat()))
        }
    };
    let prefix = rng.pick(&["", "", "", "Tel: ", "phone: ", "call ", "Mobile - "]);
    case(light_noise(rng, &format!("{prefix}{text}")), out)
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

fn duration_seconds(rng: &mut Rng) -> Case {
    let kind = rng.below(6);
    if kind == 4 {
        let x = rng.range(1, 9);
        let (text, secs) = match rng.below(3) {
            0 => (format!("{x}.5 hours"), x * 3600 + 1800),
            1 => (format!("{x}.5 minutes"), x * 60 + 30),
            _ => (format!("{x} and a half hours"), x * 3600 + 1800),
        };
        return case(light_noise(rng, &text), secs.to_string());
    }
    if kind == 5 {
        let (text, secs) = rng.pick(&[
            ("half an hour", 1800),
            ("an hour and a half", 5400),
            ("a quarter of an hour", 900),
            ("a day", 86_400),
            ("a minute and a half", 90),
            ("an hour", 3600),
            ("two weeks", 1_209_600),
            ("a week", 604_800),
        ]);
        let text = match rng.below(3) {
            0 => text.to_string(),
            1 => format!("about {text}"),
            _ => text.to_uppercase(),
        };
        return case(text, secs.to_string());
    }
    let d = if kind != 2 && rng.chance(20) {
        rng.range(1, 3)
    } else {
        0
    };
    let h = if rng.chance(60) { rng.range(0, 23) } else { 0 };
    let m = if rng.chance(70) { rng.range(0, 59) } else { 0 };
    let s = if rng.chance(30) { rng.range(0, 59) } else { 0 };
    let (d, h, m, s) = if d + h + m + s == 0 {
        (0, 0, rng.range(1, 90), 0)
    } else {
        (d, h, m, s)
    };
    let total = ((d * 24 + h) * 60 + m) * 60 + s;
    let parts = [
        (d, "d", "day", "D"),
        (h, "h", "hour", "H"),
        (m, "m", "minute", "M"),
        (s, "s", "second", "S"),
    ];
    let nonzero: Vec<_> = parts.iter().filter(|p| p.0 > 0).collect();
    let text = match kind {
        0 => {
            let sep = rng.pick(&[" ", "", " "]);
            nonzero
                .iter()
                .map(|p| format!("{}{}", p.0, p.1))
                .collect::<Vec<_>>()
                .join(sep)
        }
        1 => {
            let words: Vec<String> = nonzero.iter().map(|p| plural(p.0, p.2)).collect();
            match words.len() {
                1 => words[0].clone(),
                n => format!("{} and {}", words[..n - 1].join(", "), words[n - 1]),
            }
        }
        2 => format!("{h}:{m:02}:{s:02}"),
        _ => {
            let date_part = if d > 0 {
                format!("{d}D")
            } else {
                String::new()
            };
            let time_part: String = nonzero
                .iter()
                .filter(|p| p.1 != "d")
                .map(|p| format!("{}{}", p.0, p.3))
                .collect();
            if time_part.is_empty() {
                format!("P{date_part}")
            } else {
                format!("P{date_part}T{time_part}")
            }
        }
    };
    case(light_noise(rng, &text), total.to_string())
}

fn data_size_bytes(rng: &mut Rng) -> Case {
    let units: &[(&[&str], u64)] = &[
        (&["B", "bytes", "b"], 1),
        (&["KB", "kB", "kb", "kilobytes"], 1000),
        (&["KiB", "kibibytes", "KIB"], 1024),
        (&["MB", "megabytes", "mb", "Mb"], 1_000_000),
        (&["MiB", "mebibytes", "mib"], 1 << 20),
        (&["GB", "gigabytes", "gb", "Gb"], 1_000_000_000),
        (&["GiB", "gibibytes"], 1 << 30),
        (&["TB", "terabytes"], 1_000_000_000_000),
    ];
    let (names, mult) = rng.pick(units);
    let name = rng.pick(names);
    let whole = rng.range(1, 999) as u64;
    // Quarter steps keep every product an exact integer (all multipliers above 1 are divisible by 4).
    let q = if mult == 1 {
        0
    } else {
        rng.pick(&[0u64, 0, 1, 2, 3])
    };
    let value = match q {
        0 => whole.to_string(),
        1 => format!("{whole}.25"),
        2 => format!("{whole}.5"),
        _ => format!("{whole}.75"),
    };
    let bytes = (whole * 4 + q) * mult / 4;
    let sep = rng.pick(&[" ", "", " "]);
    case(
        light_noise(rng, &format!("{value}{sep}{name}")),
        bytes.to_string(),
    )
}

fn snake_case(rng: &mut Rng) -> Case {
    const W: &[&str] = &[
        "get", "user", "id", "max", "retry", "count", "http", "request", "total", "price", "order",
        "status", "file", "name", "is", "valid", "last", "login", "time", "page", "size",
    ];
    let n = rng.range(2, 4) as usize;
    let words: Vec<&str> = (0..n).map(|_| rng.pick(W)).collect();
    let cap = |w: &str| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    let text = match rng.below(9) {
        0 => words[0].to_string() + &words[1..].iter().map(|w| cap(w)).collect::<String>(),
        1 => words.iter().map(|w| cap(w)).collect::<String>(),
        2 => words.join("-"),
        3 => words.iter().map(|w| cap(w)).collect::<Vec<_>>().join(" "),
        4 => words.join("_").to_uppercase(),
        5 => words.join("."),
        6 => words.join(" "),
        7 => format!("  {}  ", words.join("   ")),
        _ => words.iter().map(|w| cap(w)).collect::<Vec<_>>().join("-"),
    };
    case(text, words.join("_"))
}

fn bool_normalise(rng: &mut Rng) -> Case {
    const YES: &[&str] = &[
        "yes",
        "y",
        "yep",
        "yeah",
        "sure",
        "affirmative",
        "true",
        "1",
        "on",
        "enabled",
        "correct",
        "absolutely",
        "of course",
        "yes please",
        "definitely",
        "ok",
        "sure thing",
        "that's right",
    ];
    const NO: &[&str] = &[
        "no",
        "n",
        "nope",
        "nah",
        "false",
        "0",
        "off",
        "disabled",
        "negative",
        "not really",
        "no thanks",
        "definitely not",
        "never",
        "I don't think so",
        "not at all",
        "wrong",
    ];
    let yes = rng.chance(50);
    let w = if yes { rng.pick(YES) } else { rng.pick(NO) };
    let w = match rng.below(4) {
        0 => w.to_uppercase(),
        1 => {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
        _ => w.to_string(),
    };
    let text = format!("{w}{}", rng.pick(&["", "", ".", "!", " "]));
    case(light_noise(rng, &text), if yes { "true" } else { "false" })
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

#[derive(Debug, Clone, Copy)]
pub struct WordStyle {
    pub and: bool,
    pub hyphen: bool,
    pub comma: bool,
}

fn below_100(n: i64, ws: WordStyle) -> String {
    if n < 20 {
        return ONES[n as usize].to_string();
    }
    let (t, u) = ((n / 10) as usize, (n % 10) as usize);
    match u {
        0 => TENS[t].to_string(),
        _ => format!(
            "{}{}{}",
            TENS[t],
            if ws.hyphen { "-" } else { " " },
            ONES[u]
        ),
    }
}

fn below_1000(n: i64, ws: WordStyle) -> String {
    let (h, r) = (n / 100, n % 100);
    match (h, r) {
        (0, r) => below_100(r, ws),
        (h, 0) => format!("{} hundred", ONES[h as usize]),
        (h, r) => format!(
            "{} hundred {}{}",
            ONES[h as usize],
            if ws.and { "and " } else { "" },
            below_100(r, ws)
        ),
    }
}

pub fn number_to_words(n: i64, ws: WordStyle) -> String {
    let (th, r) = (n / 1000, n % 1000);
    match (th, r) {
        (0, r) => below_1000(r, ws),
        (th, 0) => format!("{} thousand", below_1000(th, ws)),
        (th, r) => {
            let joiner = if r < 100 && ws.and {
                " and "
            } else if ws.comma {
                ", "
            } else {
                " "
            };
            format!(
                "{} thousand{joiner}{}",
                below_1000(th, ws),
                below_1000(r, ws)
            )
        }
    }
}

fn number_words(rng: &mut Rng) -> Case {
    let n = match rng.below(20) {
        0 | 1 => rng.range(0, 19),
        2..=5 => rng.range(20, 99),
        6..=12 => rng.range(100, 999),
        _ => rng.range(1000, 99_999),
    };
    let ws = WordStyle {
        and: rng.chance(50),
        hyphen: rng.chance(70),
        comma: rng.chance(30),
    };
    let text = number_to_words(n, ws);
    let text = match rng.below(8) {
        0 => text.to_uppercase(),
        1 => {
            let mut c = text.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
        _ => text,
    };
    case(light_noise(rng, &text), n.to_string())
}

fn country_iso(rng: &mut Rng) -> Case {
    const C: &[(&str, &[&str])] = &[
        (
            "DE",
            &["Germany", "Deutschland", "Federal Republic of Germany"],
        ),
        (
            "GB",
            &["United Kingdom", "UK", "U.K.", "Great Britain", "Britain"],
        ),
        (
            "US",
            &[
                "United States",
                "USA",
                "U.S.A.",
                "United States of America",
                "America",
            ],
        ),
        ("FR", &["France", "French Republic"]),
        ("ES", &["Spain", "España", "Espana"]),
        ("JP", &["Japan", "Nippon"]),
        ("CN", &["China", "People's Republic of China", "PRC"]),
        ("KR", &["South Korea", "Republic of Korea", "Korea, South"]),
        (
            "NL",
            &["Netherlands", "The Netherlands", "Holland", "Nederland"],
        ),
        ("CH", &["Switzerland", "Schweiz", "Suisse"]),
        ("AT", &["Austria", "Österreich"]),
        ("BR", &["Brazil", "Brasil"]),
        ("MX", &["Mexico", "México"]),
        ("IN", &["India", "Bharat"]),
        ("IT", &["Italy", "Italia"]),
        ("SE", &["Sweden", "Sverige"]),
        ("NO", &["Norway", "Norge"]),
        ("FI", &["Finland", "Suomi"]),
        ("PL", &["Poland", "Polska"]),
        ("GR", &["Greece", "Hellas", "Ellada"]),
        ("AE", &["United Arab Emirates", "UAE", "Emirates"]),
        ("ZA", &["South Africa", "RSA"]),
        ("NZ", &["New Zealand", "Aotearoa"]),
        ("CZ", &["Czech Republic", "Czechia", "Česko"]),
    ];
    let (code, names) = rng.pick(C);
    let name = rng.pick(names);
    let name = match rng.below(6) {
        0 => name.to_lowercase(),
        1 => name.to_uppercase(),
        _ => name.to_string(),
    };
    case(light_noise(rng, &name), code)
}

const HOUR_WORDS: [&str; 13] = [
    "twelve", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve",
];

fn daypart(h24: i64) -> &'static str {
    match h24 {
        5..=11 => "in the morning",
        12..=17 => "in the afternoon",
        18..=21 => "in the evening",
        _ => "at night",
    }
}

fn time_24h(rng: &mut Rng) -> Case {
    let h = rng.range(0, 23);
    let any = rng.range(1, 59);
    let m = rng.pick(&[0, 0, 15, 30, 45, any]);
    let h12 = if h % 12 == 0 { 12 } else { h % 12 };
    let (am, ampm_dots) = if h < 12 {
        ("am", "a.m.")
    } else {
        ("pm", "p.m.")
    };
    let words_ok = h12 != 12;
    let text = match (rng.below(8), m) {
        (0, 0) if h == 12 => "noon".to_string(),
        (0, 0) if h == 0 => "midnight".to_string(),
        (0, 0) if words_ok => format!("{} o'clock {}", HOUR_WORDS[h12 as usize], daypart(h)),
        (0, 15) if words_ok => format!("quarter past {} {}", HOUR_WORDS[h12 as usize], daypart(h)),
        (0, 30) if words_ok => format!("half past {} {}", HOUR_WORDS[h12 as usize], daypart(h)),
        // "quarter to" names the next hour; skip when that hour is 12 to avoid noon/midnight wording.
        (0, 45) if (h + 1) % 12 != 0 => {
            let next = h + 1;
            format!(
                "quarter to {} {}",
                HOUR_WORDS[(next % 12) as usize],
                daypart(next)
            )
        }
        (1, 0) => format!("{h12}{am}"),
        (2, 0) => format!("{h12} {}", am.to_uppercase()),
        (3, _) => format!("{h12}:{m:02} {}", am.to_uppercase()),
        (4, _) => format!("{h12}:{m:02}{am}"),
        (5, _) => format!("{h12}.{m:02} {ampm_dots}"),
        (6, _) => format!("{h}h{m:02}"),
        _ => format!("{h12}:{m:02} {am}"),
    };
    case(light_noise(rng, &text), format!("{h:02}:{m:02}"))
}
