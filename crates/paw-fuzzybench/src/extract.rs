//! Extraction tasks: the value is chosen first and slotted into a noisy frame;
//! noise never touches the slot, so the expected output is exactly the value.

use super::util::{fill, light_noise, noise, Rng};
use super::{case, Case, Category, Task};

pub fn tasks() -> Vec<Task> {
    let t = |name, spec, gen| Task {
        name,
        category: Category::Extraction,
        spec,
        gen,
    };
    vec![
        t(
            "ticker",
            "Extract the stock ticker symbol from a stock price or trading request. Output just the uppercase ticker symbol, nothing else (no $ sign).",
            ticker,
        ),
        t(
            "city",
            "Extract the city name from a weather request. Output just the city name exactly as spelled in the request, nothing else.",
            city,
        ),
        t(
            "person-name",
            "Extract the name of the person to contact from a request. Output just the person's name as written (first name, or first and last name), nothing else.",
            person_name,
        ),
        t(
            "emails",
            "Extract all email addresses from the text and return them as a compact JSON list of strings in order of appearance, e.g. [\"a@b.com\",\"c@d.org\"]. Do not include surrounding punctuation. Return [] if there are none.",
            emails,
        ),
        t(
            "error-lines",
            "Extract only the lines indicating errors from this log (level ERROR or FATAL, in any casing or bracket style); ignore info, debug and warning lines. \
             Output the matching lines exactly as they appear, in order, one per line. If there are none, output NONE.",
            error_lines,
        ),
        t(
            "amount",
            "Extract the money amount from the message. Output only the number with exactly two decimals and no currency sign or thousands separators, e.g. 1234.50.",
            amount,
        ),
        t(
            "order-id",
            "Find the order number in a customer message. Order numbers are ORD followed by 6 digits, but customers write them in many ways (ord123456, ORD 123456, order #123456). \
             Output it normalised as ORD-123456, nothing else.",
            order_id,
        ),
        t(
            "version",
            "Extract the software version number mentioned in the text. Output only MAJOR.MINOR.PATCH digits, without a leading v or words like version.",
            version,
        ),
        t(
            "urls",
            "Extract every URL (starting with http:// or https://) from the text. Return a compact JSON list of strings in order of appearance; \
             trailing sentence punctuation is not part of a URL. Return [] if there are none.",
            urls,
        ),
    ]
}

/// Noise the frame (with `§` slots) first, then insert values verbatim.
fn framed(rng: &mut Rng, template: &str, values: &[&str]) -> String {
    let noisy = noise(rng, template);
    fill(&noisy, values)
}

fn ticker(rng: &mut Rng) -> Case {
    const TICKERS: &[&str] = &[
        "AAPL", "MSFT", "TSLA", "NVDA", "AMZN", "GOOGL", "META", "NFLX", "AMD", "INTC", "IBM",
        "ORCL", "KO", "DIS", "JPM", "SHOP",
    ];
    let t = rng.pick(TICKERS);
    let shown = match rng.below(5) {
        0 => format!("${t}"),
        1 => format!("${}", t.to_lowercase()),
        2 => t.to_lowercase(),
        _ => t.to_string(),
    };
    let tpl = rng.pick(&[
        "What is the price of § stock?",
        "§ stock price",
        "how is § doing today",
        "quote for § please",
        "buy 10 shares of § at market",
        "did § go up after earnings?",
        "show me the chart for §",
        "sell my § position",
        "What's § trading at right now",
        "is § a buy?",
    ]);
    case(framed(rng, tpl, &[&shown]), t)
}

fn city(rng: &mut Rng) -> Case {
    const CITIES: &[&str] = &[
        "Berlin",
        "Tokyo",
        "New York",
        "São Paulo",
        "Rio de Janeiro",
        "Los Angeles",
        "Cape Town",
        "Reykjavík",
        "Paris",
        "Nairobi",
        "Mexico City",
        "Kuala Lumpur",
        "Toronto",
        "Oslo",
        "Buenos Aires",
        "Hanoi",
    ];
    let c = rng.pick(CITIES);
    let tpl = rng.pick(&[
        "What's the weather in §?",
        "Temperature in § in Fahrenheit",
        "will it snow in § this weekend",
        "§ forecast",
        "is it sunny in § right now",
        "do I need a jacket in § tomorrow",
        "weather for § please",
        "how hot is it in § today",
    ]);
    case(framed(rng, tpl, &[c]), c)
}

fn person_name(rng: &mut Rng) -> Case {
    const FIRST: &[&str] = &[
        "Sarah", "John", "Priya", "Mateo", "Aisha", "Wei", "Olga", "Kwame", "Emma", "Liam",
        "Chloé", "Hiroshi",
    ];
    const LAST: &[&str] = &[
        "Nguyen", "Smith", "Okafor", "García", "Kowalski", "Chen", "Müller", "Johnson", "O'Neil",
    ];
    let name = if rng.chance(50) {
        rng.pick(FIRST).to_string()
    } else {
        format!("{} {}", rng.pick(FIRST), rng.pick(LAST))
    };
    let tpl = rng.pick(&[
        "I need to let § know about the meeting",
        "Send an email to §",
        "call § tomorrow morning",
        "remind § about the invoice",
        "text § that I'm on my way",
        "schedule a call with § next week",
        "ask § to review the slides",
        "message § about lunch",
    ]);
    case(framed(rng, tpl, &[&name]), name)
}

fn email_addr(rng: &mut Rng) -> String {
    let user = rng.pick(&[
        "alice", "bob.k", "j.smith", "support", "maria_r", "dev-team", "ops", "x.y.z", "sam42",
    ]);
    let domain = rng.pick(&[
        "company.com",
        "example.org",
        "mail.co.uk",
        "uni.edu",
        "startup.io",
        "gmail.com",
    ]);
    format!("{user}@{domain}")
}

fn emails(rng: &mut Rng) -> Case {
    let n = rng.pick(&[0usize, 1, 1, 2, 2, 3]);
    let addrs = distinct(rng, n, email_addr);
    let n = addrs.len();
    let text = match n {
        0 => rng
            .pick(&[
                "No contact details yet, I'll follow up tomorrow.",
                "Please call the front desk for help.",
                "Reach out on the team chat if something breaks.",
            ])
            .to_string(),
        1 => fill(
            rng.pick(&[
                "Contact § for details.",
                "Send the files to § please",
                "My address is §.",
                "questions? write to § (weekdays only)",
            ]),
            &[&addrs[0]],
        ),
        2 => fill(
            rng.pick(&[
                "Contact § or §",
                "cc: §, § - thanks!",
                "Either § or § can approve this.",
            ]),
            &[&addrs[0], &addrs[1]],
        ),
        _ => fill(
            rng.pick(&["Team: §; §; §.", "Send to §, § and § before noon."]),
            &[&addrs[0], &addrs[1], &addrs[2]],
        ),
    };
    let out = json_list(&addrs);
    case(light_noise(rng, &text), out)
}

/// Up to `n` distinct values (a repeated address would make "all, in order" ambiguous).
fn distinct(rng: &mut Rng, n: usize, mut make: impl FnMut(&mut Rng) -> String) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for _ in 0..n {
        let v = make(rng);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Compact JSON list of strings (values here never need escaping beyond what serde does).
fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_string())
}

fn error_lines(rng: &mut Rng) -> Case {
    const MSGS: &[&str] = &[
        "Connection refused: database timeout after 30s",
        "Max retries exceeded, shutting down",
        "Server started on port 8080",
        "Loading config from /etc/app.conf",
        "Retrying connection (attempt 2/5)",
        "Slow query detected: 2.3s",
        "disk quota exceeded on /var",
        "null reference in OrderService.save",
        "cache warmed in 120ms",
        "user 4411 logged in",
        "TLS handshake failed with upstream",
        "scheduled job nightly-report finished",
    ];
    let n = rng.range(3, 7);
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..n {
        let is_err = rng.chance(35);
        let lvl = if is_err {
            rng.pick(&["ERROR", "error", "Error", "FATAL"])
        } else {
            rng.pick(&["INFO", "DEBUG", "WARN", "info", "debug"])
        };
        let msg = rng.pick(MSGS);
        let line = match rng.below(3) {
            0 => format!("[{lvl}] {msg}"),
            1 => format!("{lvl}: {msg}"),
            _ => format!(
                "12:{:02}:{:02} {lvl} {msg}",
                rng.range(0, 59),
                rng.range(0, 59)
            ),
        };
        if is_err {
            errors.push(line.clone());
        }
        lines.push(line);
    }
    let out = if errors.is_empty() {
        "NONE".to_string()
    } else {
        errors.join("\n")
    };
    case(lines.join("\n"), out)
}

fn with_thousands(n: i64, sep: char) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

fn amount(rng: &mut Rng) -> Case {
    let whole = if rng.chance(30) {
        rng.range(1000, 250_000)
    } else {
        rng.range(1, 999)
    };
    let cents = if rng.chance(40) { 0 } else { rng.range(1, 99) };
    let expect = format!("{whole}.{cents:02}");
    let plain = if cents == 0 && rng.chance(60) {
        whole.to_string()
    } else {
        format!("{whole}.{cents:02}")
    };
    let grouped = if cents == 0 && rng.chance(50) {
        with_thousands(whole, ',')
    } else {
        format!("{}.{cents:02}", with_thousands(whole, ','))
    };
    let shown = match rng.below(6) {
        0 => format!("${grouped}"),
        1 => format!("{plain} USD"),
        2 => format!("{plain} dollars"),
        3 => format!("USD {grouped}"),
        4 => format!("${plain}"),
        _ => format!("€{grouped}"),
    };
    let tpl = rng.pick(&[
        "Your total is § - thanks for shopping!",
        "please pay § by Friday",
        "I was refunded § yesterday",
        "the invoice for order 7781 comes to §",
        "Rent this month: §",
        "we spent § on the offsite",
        "Transfer of § received.",
        "can you reimburse § for the taxi",
    ]);
    case(framed(rng, tpl, &[&shown]), expect)
}

fn order_id(rng: &mut Rng) -> Case {
    let n = format!("{:06}", rng.range(0, 999_999));
    let shown = match rng.below(6) {
        0 => format!("ORD-{n}"),
        1 => format!("ord{n}"),
        2 => format!("ORD {n}"),
        3 => format!("order #{n}"),
        4 => format!("Ord-{n}"),
        _ => format!("#ORD{n}"),
    };
    let tpl = rng.pick(&[
        "hi, my § never arrived",
        "I want to return § please",
        "§ was charged twice ($49.99)",
        "where is §? it's been 12 days",
        "cancel § asap",
        "the item in § is damaged",
        "tracking for § shows nothing since May 3",
        "can I change the address on §",
    ]);
    case(framed(rng, tpl, &[&shown]), format!("ORD-{n}"))
}

fn version(rng: &mut Rng) -> Case {
    let v = format!(
        "{}.{}.{}",
        rng.range(0, 12),
        rng.range(0, 30),
        rng.range(0, 40)
    );
    let shown = match rng.below(5) {
        0 => format!("v{v}"),
        1 => format!("version {v}"),
        2 => format!("ver. {v}"),
        3 => format!("release {v}"),
        _ => v.clone(),
    };
    let tpl = rng.pick(&[
        "upgrading to § broke the login page",
        "we're still on § in production",
        "§ fixes the memory leak",
        "please test § before Friday",
        "after installing § the app takes 2 minutes to start",
        "changelog for § is up",
        "rolled back from § because of crashes",
    ]);
    case(framed(rng, tpl, &[&shown]), v)
}

fn urls(rng: &mut Rng) -> Case {
    let make = |rng: &mut Rng| {
        format!(
            "{}://{}{}",
            rng.pick(&["https", "https", "http"]),
            rng.pick(&[
                "example.com",
                "docs.rs",
                "github.com/acme/tool",
                "news.site.org",
                "status.acme.io"
            ]),
            rng.pick(&[
                "",
                "/",
                "/guide",
                "/issues/42",
                "/a/b?x=1",
                "/post.html#top"
            ])
        )
    };
    let n = rng.pick(&[0usize, 1, 1, 2, 2, 3]);
    let list = distinct(rng, n, make);
    let n = list.len();
    let text = match n {
        0 => rng
            .pick(&[
                "See the wiki page for details.",
                "No links, just call me.",
                "the docs are in the shared drive",
            ])
            .to_string(),
        1 => fill(
            rng.pick(&[
                "see § for details.",
                "Docs: §",
                "the status page (§) says all good",
                "read this: §!",
            ]),
            &[&list[0]],
        ),
        2 => fill(
            rng.pick(&["compare § with §.", "links: § and §", "old: § new: §"]),
            &[&list[0], &list[1]],
        ),
        _ => fill(
            rng.pick(&["sources: §, §, §.", "§ then § then §"]),
            &[&list[0], &list[1], &list[2]],
        ),
    };
    case(light_noise(rng, &text), json_list(&list))
}
