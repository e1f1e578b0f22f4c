//! Small structured-generation tasks: the structure (filters, schedule, event,
//! record, command) is built first and both the English request and the
//! canonical output are rendered from it.

use super::util::{date, fill, iso, noise, ordinal, Rng, MONTHS, WEEKDAYS};
use super::{case, Case, Category, Task};

pub fn tasks() -> Vec<Task> {
    let t = |name, spec, gen| Task {
        name,
        category: Category::Generation,
        spec,
        gen,
    };
    vec![
        t(
            "filter-json",
            "Convert an English product search into JSON: {\"filters\":[[field,operator,value],...],\"sort\":[field,direction] or null}. Filters are ANDed.\n\
             Fields: category (the product noun in lowercase plural, e.g. \"keyboards\"), brand (string as written), price (number of dollars), rating (number of stars), in_stock (true).\n\
             Operators: ==, <, <=, >, >=. List filters in this order: category, brand, price, rating, in_stock.\n\
             sort is [\"price\",\"asc\"] for cheapest first, [\"price\",\"desc\"] for most expensive first, [\"rating\",\"desc\"] for best rated first, otherwise null.\n\
             Output compact JSON only.",
            filter_json,
        ),
        t(
            "schedule-cron",
            "Translate an English recurring schedule into a standard five-field cron expression (minute hour day-of-month month day-of-week). \
             Use numbers only, no names; Sunday is 0 and Saturday is 6. Write Monday to Friday as 1-5; otherwise list values comma-separated in ascending order. \
             Every N minutes is */N in the minute field. Output only the cron expression.",
            schedule_cron,
        ),
        t(
            "event-json",
            "Turn a calendar request into JSON: {\"title\":string,\"date\":\"YYYY-MM-DD\",\"start\":\"HH:MM\" (24-hour),\"minutes\":duration as integer}. \
             The title is the event name exactly as written. Output compact JSON with keys in that order.",
            event_json,
        ),
        t(
            "kv-json",
            "Convert loosely written key/value pairs (separated by ; , | or newlines, with = or :) into a compact JSON object. \
             Keys are lowercased and kept in input order. Whole numbers become JSON numbers; yes/true/on become true and no/false/off become false; everything else is a string. Output only the JSON.",
            kv_json,
        ),
        t(
            "git-command",
            "Translate a request into exactly one git command. Output ONLY one of these forms, with the placeholder filled from the request:\n\
             git status | git add -A | git reset --soft HEAD~1 | git restore FILE | git switch -c BRANCH | git switch BRANCH | git branch -d BRANCH | \
             git log --oneline -n N | git commit -m \"MESSAGE\" | git pull | git push",
            git_command,
        ),
    ]
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn filter_json(rng: &mut Rng) -> Case {
    let noun = rng.pick(&[
        "headphones",
        "keyboards",
        "monitors",
        "laptops",
        "backpacks",
        "desk lamps",
        "webcams",
        "speakers",
    ]);
    let mut filters = vec![format!("[\"category\",\"==\",\"{noun}\"]")];
    let mut noun_phrase = noun.to_string();
    let mut clauses: Vec<String> = Vec::new();
    if rng.chance(35) {
        let brand = rng.pick(&["Sony", "Logitech", "Dell", "Anker", "Apple", "JBL"]);
        filters.push(format!("[\"brand\",\"==\",\"{brand}\"]"));
        if rng.chance(50) {
            noun_phrase = format!("{brand} {noun_phrase}");
        } else {
            clauses.push(format!("from {brand}"));
        }
    }
    if rng.chance(65) {
        let v = rng.range(2, 60) * 10;
        let (op, text) = rng.pick(&[
            ("<", "under $§"),
            ("<", "below $§"),
            ("<=", "at most $§"),
            ("<=", "$§ or less"),
            (">", "over $§"),
            (">", "more than $§"),
            (">=", "at least $§"),
        ]);
        filters.push(format!("[\"price\",\"{op}\",{v}]"));
        clauses.push(fill(text, &[&v.to_string()]));
    }
    if rng.chance(45) {
        let v = rng.range(2, 4);
        let (op, text) = rng.pick(&[
            (">=", "rated at least § stars"),
            (">=", "with §+ stars"),
            (">", "rated above § stars"),
        ]);
        filters.push(format!("[\"rating\",\"{op}\",{v}]"));
        clauses.push(fill(text, &[&v.to_string()]));
    }
    if rng.chance(35) {
        filters.push("[\"in_stock\",\"==\",true]".to_string());
        if rng.chance(50) {
            noun_phrase = format!("in-stock {noun_phrase}");
        } else {
            clauses.push(rng.pick(&["in stock", "available now"]).to_string());
        }
    }
    rng.shuffle(&mut clauses);
    let (sort, sort_text) = rng.pick(&[
        ("null", ""),
        ("null", ""),
        ("[\"price\",\"asc\"]", "cheapest first"),
        ("[\"price\",\"asc\"]", "lowest price first"),
        ("[\"price\",\"desc\"]", "most expensive first"),
        ("[\"rating\",\"desc\"]", "best rated first"),
        ("[\"rating\",\"desc\"]", "top rated first"),
    ]);
    let mut text = capitalise(&noun_phrase);
    if !clauses.is_empty() {
        text.push(' ');
        text.push_str(&clauses.join(if rng.chance(50) { ", " } else { " and " }));
    }
    if !sort_text.is_empty() {
        text.push_str(", ");
        text.push_str(sort_text);
    }
    text.push_str(rng.pick(&["", ".", ""]));
    case(
        text,
        format!("{{\"filters\":[{}],\"sort\":{sort}}}", filters.join(",")),
    )
}

/// A clock time in one of several English renderings.
fn clock(rng: &mut Rng, h: i64, m: i64) -> String {
    let h12 = if h % 12 == 0 { 12 } else { h % 12 };
    let am = if h < 12 { "am" } else { "pm" };
    match (rng.below(5), m) {
        (0, 0) if h == 12 => "noon".to_string(),
        (0, 0) if h == 0 => "midnight".to_string(),
        (1, 0) => format!("{h12}{am}"),
        (2, _) => format!("{h:02}:{m:02}"),
        (3, _) => format!("{h12}:{m:02} {}", am.to_uppercase()),
        _ => format!("{h12}:{m:02}{am}"),
    }
}

fn schedule_cron(rng: &mut Rng) -> Case {
    let h = rng.range(0, 23);
    let m = rng.pick(&[0, 0, 0, 15, 30, 45]);
    let (text, cron) = match rng.below(9) {
        0 => {
            let at = clock(rng, h, m);
            (
                fill(
                    rng.pick(&["every day at §", "daily at §", "each day at §"]),
                    &[&at],
                ),
                format!("{m} {h} * * *"),
            )
        }
        1 => {
            let at = clock(rng, h, m);
            (
                fill(
                    rng.pick(&[
                        "every weekday at §",
                        "Monday to Friday at §",
                        "on weekdays at §",
                    ]),
                    &[&at],
                ),
                format!("{m} {h} * * 1-5"),
            )
        }
        2 => {
            let at = clock(rng, h, m);
            (
                fill(
                    rng.pick(&["every weekend at §", "on Saturdays and Sundays at §"]),
                    &[&at],
                ),
                format!("{m} {h} * * 0,6"),
            )
        }
        3 => {
            let d = rng.range(0, 6) as usize;
            let at = clock(rng, h, m);
            (
                format!("every {} at {at}", WEEKDAYS[d]),
                format!("{m} {h} * * {d}"),
            )
        }
        4 => {
            let mut a = rng.range(0, 6) as usize;
            let mut b = rng.range(0, 6) as usize;
            if a == b {
                b = (b + 3) % 7;
            }
            let at = clock(rng, h, m);
            let text = format!("every {} and {} at {at}", WEEKDAYS[a], WEEKDAYS[b]);
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            (text, format!("{m} {h} * * {a},{b}"))
        }
        5 => {
            let d1 = rng.range(1, 14);
            let at = clock(rng, h, m);
            if rng.chance(50) {
                (
                    format!("on the {} of every month at {at}", ordinal(d1)),
                    format!("{m} {h} {d1} * *"),
                )
            } else {
                let d2 = d1 + rng.range(1, 14);
                (
                    format!(
                        "on the {} and {} of every month at {at}",
                        ordinal(d1),
                        ordinal(d2)
                    ),
                    format!("{m} {h} {d1},{d2} * *"),
                )
            }
        }
        6 => {
            let n = rng.pick(&[5, 10, 15, 20, 30]);
            (
                fill(
                    rng.pick(&["every § minutes", "every § min", "run every § minutes"]),
                    &[&n.to_string()],
                ),
                format!("*/{n} * * * *"),
            )
        }
        7 => match rng.below(3) {
            0 => ("every hour".to_string(), "0 * * * *".to_string()),
            1 => ("hourly, on the hour".to_string(), "0 * * * *".to_string()),
            _ => {
                let mm = rng.range(1, 59);
                (
                    format!("every hour at {mm} minutes past"),
                    format!("{mm} * * * *"),
                )
            }
        },
        _ => {
            let mo = rng.range(1, 12);
            let d = rng.range(1, 28);
            let at = clock(rng, h, m);
            (
                format!("every year on {} {} at {at}", MONTHS[(mo - 1) as usize], d),
                format!("{m} {h} {d} {mo} *"),
            )
        }
    };
    case(noise(rng, &capitalise(&text)), cron)
}

fn event_json(rng: &mut Rng) -> Case {
    let title = rng.pick(&[
        "Lunch with Sam",
        "Design review",
        "Dentist appointment",
        "Team standup",
        "Quarterly planning",
        "Call with the bank",
        "Yoga class",
        "Interview with Maria Lopez",
        "Sprint retro",
        "Coffee with Dev",
    ]);
    let (y, mo, d) = date(rng, 2025, 2027);
    let date_text = match rng.below(3) {
        0 => iso(y, mo, d),
        1 => format!("{} {d}, {y}", MONTHS[(mo - 1) as usize]),
        _ => format!("{d} {} {y}", MONTHS[(mo - 1) as usize]),
    };
    let h = rng.range(7, 20);
    let m = rng.pick(&[0, 0, 15, 30, 45]);
    let time_text = clock(rng, h, m);
    let (dur_text, minutes) = rng.pick(&[
        ("for 30 minutes", 30),
        ("for 45 minutes", 45),
        ("for 1 hour", 60),
        ("for an hour", 60),
        ("for 1.5 hours", 90),
        ("for 90 min", 90),
        ("for 2 hours", 120),
        ("for 15 min", 15),
        ("for 20 minutes", 20),
        ("for 3 hours", 180),
    ]);
    let text = match rng.below(3) {
        0 => format!("{title} on {date_text} at {time_text} {dur_text}"),
        1 => format!(
            "{date_text}, {time_text}: {title} ({})",
            dur_text.trim_start_matches("for ")
        ),
        _ => format!("Schedule {title} at {time_text} on {date_text}, {dur_text}"),
    };
    let out = format!(
        "{{\"title\":{},\"date\":\"{}\",\"start\":\"{h:02}:{m:02}\",\"minutes\":{minutes}}}",
        serde_json::to_string(title).unwrap_or_default(),
        iso(y, mo, d)
    );
    // No space noise: it could land inside the title, which must be copied verbatim.
    case(text, out)
}

fn kv_json(rng: &mut Rng) -> Case {
    let mut keys = vec![
        "name", "age", "city", "active", "role", "score", "team", "verified", "level", "colour",
    ];
    rng.shuffle(&mut keys);
    let n = rng.range(2, 5) as usize;
    let sep = rng.pick(&["; ", ", ", "\n", " | ", ";"]);
    let assign = rng.pick(&["=", ": ", " = ", ":"]);
    let mut text_parts = Vec::new();
    let mut json_parts = Vec::new();
    for k in &keys[..n] {
        // Each key has a natural value type, so records read like real ones.
        let (shown, json) = match *k {
            "age" | "score" | "level" => {
                let v = rng.range(0, 120);
                (v.to_string(), v.to_string())
            }
            "active" | "verified" => {
                let (s, b) = rng.pick(&[
                    ("yes", true),
                    ("true", true),
                    ("on", true),
                    ("Yes", true),
                    ("TRUE", true),
                    ("no", false),
                    ("false", false),
                    ("off", false),
                    ("No", false),
                ]);
                (s.to_string(), b.to_string())
            }
            _ => {
                let s = rng.pick(&[
                    "Bob",
                    "Berlin",
                    "blue",
                    "admin",
                    "draft",
                    "Lisbon",
                    "alpha",
                    "São Paulo",
                    "night shift",
                    "v2",
                    "Ana Lima",
                ]);
                (s.to_string(), serde_json::to_string(s).unwrap_or_default())
            }
        };
        let key_shown = match rng.below(4) {
            0 => capitalise(k),
            1 => k.to_uppercase(),
            _ => k.to_string(),
        };
        text_parts.push(format!("{key_shown}{assign}{shown}"));
        json_parts.push(format!("\"{k}\":{json}"));
    }
    case(
        text_parts.join(sep),
        format!("{{{}}}", json_parts.join(",")),
    )
}

fn git_command(rng: &mut Rng) -> Case {
    let branch = rng.pick(&[
        "feature/login",
        "fix-typo",
        "release-2.1",
        "dev",
        "experiment",
        "hotfix/payments",
    ]);
    let file = rng.pick(&[
        "src/main.rs",
        "README.md",
        "config.yaml",
        "app/models.py",
        "index.html",
    ]);
    let n = rng.range(2, 20).to_string();
    let msg = rng.pick(&[
        "fix typo",
        "add login page",
        "update deps",
        "wip",
        "refactor parser",
    ]);
    let (cmd, phrasings): (String, &[&str]) = match rng.below(11) {
        0 => (
            "git status".into(),
            &[
                "what's the state of my repo",
                "show me what changed",
                "which files are modified right now",
            ],
        ),
        1 => (
            "git add -A".into(),
            &[
                "stage everything",
                "add all my changes to the index",
                "stage all files including deleted ones",
            ],
        ),
        2 => (
            "git reset --soft HEAD~1".into(),
            &[
                "undo my last commit but keep the changes",
                "uncommit the last commit, keep my work",
                "take back the last commit without losing changes",
            ],
        ),
        3 => (
            format!("git restore {file}"),
            &[
                "discard my changes to §",
                "throw away local edits in §",
                "revert § to the last committed version",
            ],
        ),
        4 => (
            format!("git switch -c {branch}"),
            &[
                "create a branch called § and switch to it",
                "start a new branch §",
                "make branch § and check it out",
            ],
        ),
        5 => (
            format!("git switch {branch}"),
            &[
                "switch to the § branch",
                "go to branch §",
                "check out the existing branch §",
            ],
        ),
        6 => (
            format!("git branch -d {branch}"),
            &[
                "delete the branch §",
                "remove my local branch §",
                "get rid of branch §",
            ],
        ),
        7 => (
            format!("git log --oneline -n {n}"),
            &[
                "show the last § commits",
                "list my § most recent commits",
                "what were the last § commits",
            ],
        ),
        8 => (
            format!("git commit -m \"{msg}\""),
            &[
                "commit with the message \"§\"",
                "commit my staged changes as \"§\"",
                "make a commit saying \"§\"",
            ],
        ),
        9 => (
            "git pull".into(),
            &[
                "get the latest changes from the remote",
                "update my branch from origin",
                "pull down my teammates' work",
            ],
        ),
        _ => (
            "git push".into(),
            &[
                "push my commits",
                "upload my commits to the remote",
                "send my branch to origin",
            ],
        ),
    };
    let tpl = rng.pick(phrasings);
    let slot = if cmd.starts_with("git restore") {
        file.to_string()
    } else if cmd.starts_with("git log") {
        n.clone()
    } else if cmd.starts_with("git commit") {
        msg.to_string()
    } else {
        branch.to_string()
    };
    let tpl = format!("{tpl}{}", rng.pick(&["", "", " please", "?", "."]));
    case(fill(&noise(rng, &tpl), &[&slot]), cmd)
}
