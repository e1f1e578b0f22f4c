//! Classification tasks: the label is chosen first, then an input is composed
//! from that label's phrase bank plus label-neutral framing and noise.

use super::util::{fill, light_noise, noise, Rng};
use super::{case, Case, Category, Task};

/// Declared label set per task (the spec lists exactly these).
pub fn labels(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "log-alert" => &["ALERT", "QUIET"],
        "log-level" => &["ERROR", "WARN", "INFO", "DEBUG"],
        "ticket-routing" => &["billing", "bug", "feature", "account", "other"],
        "intent" => &["search", "create", "delete", "other"],
        "sentiment" => &["positive", "negative", "neutral"],
        "urgency" => &["immediate", "wait"],
        "tool-routing" => &[
            "web_search",
            "get_weather",
            "calculator",
            "send_email",
            "none",
        ],
        "spam" => &["spam", "ham"],
        "commit-type" => &["feat", "fix", "docs", "refactor", "test", "chore"],
        "shell-risk" => &["safe", "dangerous"],
        "pii-detect" => &["PII", "CLEAN"],
        "code-language" => &["python", "rust", "javascript", "sql", "bash"],
        _ => return None,
    })
}

pub fn tasks() -> Vec<Task> {
    let t = |name, spec, gen| Task {
        name,
        category: Category::Classification,
        spec,
        gen,
    };
    vec![
        t(
            "log-alert",
            "Classify one line from a model-training or server log. Return ONLY one word: ALERT or QUIET.\n\
             ALERT means something a human should look at: an error, exception or traceback, a crash or killed worker, \
             out-of-memory, a NaN/inf loss, a saved checkpoint, evaluation results, or training finished.\n\
             QUIET means routine progress: step/loss/learning-rate updates, throughput numbers, debug or info chatter.",
            log_alert,
        ),
        t(
            "log-level",
            "Read one log line in any common format (bracketed levels, logfmt, JSON logs, glog, Python logging, \
             env_logger...) and return its severity. Return ONLY one of: ERROR, WARN, INFO, DEBUG. \
             Treat FATAL/CRITICAL/E as ERROR, WARNING/W as WARN, I as INFO, TRACE/D as DEBUG.",
            log_level,
        ),
        t(
            "ticket-routing",
            "Route a customer support ticket. Return ONLY one of: billing, bug, feature, account, other.\n\
             billing: charges, invoices, refunds, prices, payments. bug: something in the product is broken or misbehaves. \
             feature: a request for something new. account: login, password, profile, email change, deleting or locking an account. \
             other: anything else.",
            ticket_routing,
        ),
        t(
            "intent",
            "Classify the user's intent. Return ONLY one of: search, create, delete, other.\n\
             search = find or look up something existing; create = make something new; \
             delete = remove something; other = anything else (chit-chat, questions).",
            intent,
        ),
        t(
            "sentiment",
            "Classify the sentiment of a product review. Return ONLY one of: positive, negative, neutral. \
             neutral means a factual statement or question with no opinion.",
            sentiment,
        ),
        t(
            "urgency",
            "Classify if this message requires immediate attention or can wait. Return ONLY one word: immediate or wait. \
             immediate: outages, security incidents, data loss, deadlines today, customers blocked. \
             wait: newsletters, FYIs, social events, non-urgent requests.",
            urgency,
        ),
        t(
            "tool-routing",
            "Decide which tool should handle a user request. Output EXACTLY one of: web_search, get_weather, calculator, send_email, none.\n\
             get_weather: weather or forecast questions. calculator: arithmetic. send_email: writing or sending a message to someone. \
             web_search: news, current events, facts that need looking up online. none: the assistant can answer directly (jokes, definitions, writing help).",
            tool_routing,
        ),
        t(
            "spam",
            "Is this email spam? Return ONLY spam or ham. spam: unsolicited prizes, phishing, scams, miracle offers. \
             ham: normal personal or work email, including legitimate notifications.",
            spam,
        ),
        t(
            "commit-type",
            "Classify a git commit message by conventional-commit type. Return ONLY one of: feat, fix, docs, refactor, test, chore.\n\
             feat: new user-facing capability. fix: corrects a bug. docs: documentation only. refactor: restructures code without changing behaviour. \
             test: adds or changes tests only. chore: dependencies, CI, formatting, build config.",
            commit_type,
        ),
        t(
            "shell-risk",
            "Decide whether a shell command is dangerous to run without review. Return ONLY safe or dangerous.\n\
             dangerous: destroys or overwrites data or disks, recursive deletes, world-writable permissions on system paths, \
             piping downloaded scripts into a shell, force-pushing shared branches, fork bombs. safe: read-only or easily reversible commands.",
            shell_risk,
        ),
        t(
            "pii-detect",
            "Does this message contain personal identifying information (an email address, phone number, social security number, \
             credit card number or home street address)? Return ONLY PII or CLEAN.",
            pii_detect,
        ),
        t(
            "code-language",
            "Identify the programming language of a code snippet. Return ONLY one of: python, rust, javascript, sql, bash.",
            code_language,
        ),
    ]
}

/// Pick a label index uniformly, then one core phrase of that label.
fn pick_label<'a>(
    rng: &mut Rng,
    banks: &'a [(&'static str, &'a [&'a str])],
) -> (&'static str, &'a str) {
    let (label, bank) = rng.pick(banks);
    (label, rng.pick(bank))
}

fn frame(rng: &mut Rng, prefixes: &[&str], core: &str, suffixes: &[&str]) -> String {
    format!("{}{}{}", rng.pick(prefixes), core, rng.pick(suffixes))
}

fn num(rng: &mut Rng, lo: i64, hi: i64) -> String {
    rng.range(lo, hi).to_string()
}

fn small_float(rng: &mut Rng) -> String {
    format!("{}.{:03}", rng.range(0, 3), rng.range(1, 999))
}

fn log_alert(rng: &mut Rng) -> Case {
    let alert = rng.chance(50);
    let step = num(rng, 10, 90_000);
    let f = small_float(rng);
    let g = small_float(rng);
    let lr = format!("{}e-{}", rng.range(1, 9), rng.range(3, 5));
    let line = if alert {
        match rng.below(10) {
            0 => format!(
                "[step {step}] ERROR: CUDA out of memory. Tried to allocate {} MiB",
                rng.range(20, 4000)
            ),
            1 => "Traceback (most recent call last):".to_string(),
            2 => format!("[Checkpoint] Saved model at step {step}"),
            3 => format!("eval: accuracy={f} f1={g} (step {step})"),
            4 => format!(
                "Training finished after {step} steps in {}h",
                rng.range(1, 72)
            ),
            5 => format!("[step {step}] loss=nan lr={lr}"),
            6 => format!("[FATAL] worker {} exited with code 137", rng.range(0, 63)),
            7 => format!(
                "RuntimeError: expected tensor on cuda:{} but found cpu",
                rng.range(0, 7)
            ),
            8 => format!(
                "saving checkpoint to /ckpt/run{}/step_{step}.pt",
                rng.range(1, 99)
            ),
            _ => format!("[eval] step {step}: val_loss={f} val_acc={g}"),
        }
    } else {
        match rng.below(8) {
            0 => format!("[step {step}] loss={f} lr={lr}"),
            1 => format!(
                "epoch {} batch {}/{}",
                rng.range(1, 40),
                rng.range(1, 999),
                rng.range(1000, 5000)
            ),
            2 => format!("DEBUG loading shard {}/{}", rng.range(1, 63), 64),
            3 => format!("INFO dataloader prefetch queue size={}", rng.range(1, 64)),
            4 => format!(
                "[step {step}] tokens/s={} mem={}GB",
                rng.range(1000, 90_000),
                rng.range(4, 80)
            ),
            5 => format!("[step {step}] grad_norm={f}"),
            6 => format!("INFO warmup {}/{} steps", rng.range(1, 999), 1000),
            _ => format!(
                "[step {step}] loss={f} ppl={}.{}",
                rng.range(2, 90),
                rng.range(0, 9)
            ),
        }
    };
    let input = if rng.chance(20) {
        line.to_lowercase()
    } else {
        light_noise(rng, &line)
    };
    case(input, if alert { "ALERT" } else { "QUIET" })
}

const LOG_MESSAGES: &[&str] = &[
    "connection to db-primary reset",
    "request handled in 34ms",
    "cache miss for user profile",
    "retrying upload of chunk 7",
    "disk usage at 91 percent",
    "config reloaded from /etc/app.toml",
    "payment webhook rejected: bad signature",
    "listening on 0.0.0.0:8080",
    "slow query took 2.3s",
    "parsed 512 records",
    "token refresh scheduled",
    "could not open socket: permission denied",
    "worker pool resized to 8",
    "deprecated flag --legacy used",
];

fn log_level(rng: &mut Rng) -> Case {
    let (label, spellings): (&str, &[&str]) = rng.pick(&[
        (
            "ERROR",
            &["ERROR", "error", "ERR", "FATAL", "CRITICAL", "Error"][..],
        ),
        ("WARN", &["WARN", "warn", "WARNING", "warning", "Warn"][..]),
        ("INFO", &["INFO", "info", "Info", "INF"][..]),
        ("DEBUG", &["DEBUG", "debug", "TRACE", "trace", "DBG"][..]),
    ]);
    let lvl = rng.pick(spellings);
    let msg = rng.pick(LOG_MESSAGES);
    let (h, mi, s) = (rng.range(0, 23), rng.range(0, 59), rng.range(0, 59));
    let ts = format!(
        "2025-{:02}-{:02}T{h:02}:{mi:02}:{s:02}Z",
        rng.range(1, 12),
        rng.range(1, 28)
    );
    let glog = label.chars().next().unwrap_or('I');
    let line = match rng.below(7) {
        0 => format!("{ts} [{lvl}] {msg}"),
        1 => format!("time={ts} level={} msg=\"{msg}\"", lvl.to_lowercase()),
        2 => format!(
            "{{\"ts\":\"{ts}\",\"level\":\"{}\",\"msg\":\"{msg}\"}}",
            lvl.to_lowercase()
        ),
        // glog: single-letter severity glued to the date.
        3 => format!(
            "{glog}{:02}{:02} {h:02}:{mi:02}:{s:02}.{:06} {} server.cc:{}] {msg}",
            rng.range(1, 12),
            rng.range(1, 28),
            rng.range(0, 999_999),
            rng.range(100, 99_999),
            rng.range(10, 900)
        ),
        4 => format!("{}:app.worker:{msg}", lvl.to_uppercase()),
        5 => format!("[{ts} {:<5} api::handler] {msg}", lvl.to_uppercase()),
        _ => format!("{lvl}: {msg}"),
    };
    case(light_noise(rng, &line), label)
}

fn ticket_routing(rng: &mut Rng) -> Case {
    let banks: &[(&str, &[&str])] = &[
        (
            "billing",
            &[
                "I was charged twice this month",
                "my invoice shows the wrong amount",
                "please refund my last payment",
                "why did my subscription price go up",
                "the card payment failed but the money left my account",
                "I need a VAT invoice for March",
                "you billed me after I downgraded to the free plan",
                "can I pay annually instead of monthly",
            ],
        ),
        (
            "bug",
            &[
                "the export button does nothing",
                "the app crashes when I open settings",
                "search returns a blank page",
                "the CSV download is corrupted",
                "I get error 500 when saving a draft",
                "text is unreadable in dark mode since the update",
                "notifications arrive twice on Android",
                "the calendar shows the wrong timezone for events",
            ],
        ),
        (
            "feature",
            &[
                "it would be great to have a dark mode",
                "please add support for exporting to PDF",
                "can you add keyboard shortcuts",
                "I wish I could schedule reports",
                "any plans for a Linux desktop app",
                "would love an API for bulk uploads",
                "please let us tag projects with colours",
                "could you add two-way sync with Google Sheets",
            ],
        ),
        (
            "account",
            &[
                "I can't log in, please reset my password",
                "how do I change the email on my account",
                "please delete my account and all my data",
                "how do I turn on two-factor authentication",
                "my account got locked after too many attempts",
                "I want to change my username",
                "the password reset link never arrives",
                "please merge my two accounts",
            ],
        ),
        (
            "other",
            &[
                "what are your office hours",
                "do you have a partner program",
                "just wanted to say thanks for the great service",
                "where is your company located",
                "are you hiring engineers",
                "can I visit your booth at the conference",
                "who should I contact about a press interview",
            ],
        ),
    ];
    let (label, core) = pick_label(rng, banks);
    let text = frame(
        rng,
        &[
            "",
            "",
            "Hi, ",
            "Hello support, ",
            "Hey there - ",
            "Quick question: ",
            "Good morning. ",
        ],
        core,
        &[
            "",
            ".",
            "!",
            ". Thanks!",
            ". Thank you.",
            "? Regards, Dana",
            ". Cheers",
            "...",
        ],
    );
    case(noise(rng, &text), label)
}

fn intent(rng: &mut Rng) -> Case {
    const OBJECTS: &[&str] = &[
        "the latest report",
        "the Q3 budget",
        "my notes about the trip",
        "the invoice from March",
        "the design folder",
        "last week's meeting summary",
        "the onboarding checklist",
        "the photo album from Lisbon",
    ];
    const NEW_OBJECTS: &[&str] = &[
        "a new folder",
        "a folder called drafts",
        "a new note",
        "a shopping list",
        "a reminder for Friday",
        "a new project board",
        "an empty spreadsheet",
        "a calendar event for lunch",
    ];
    let label = rng.pick(&["search", "create", "delete", "other"]);
    let text = match label {
        "search" => fill(
            rng.pick(&[
                "find §",
                "look up §",
                "search for §",
                "where is §",
                "show me §",
                "can you locate §",
                "I need to find §",
            ]),
            &[rng.pick(OBJECTS)],
        ),
        "create" => fill(
            rng.pick(&[
                "make §",
                "create §",
                "add §",
                "set up §",
                "start §",
                "please create §",
                "I'd like to make §",
            ]),
            &[rng.pick(NEW_OBJECTS)],
        ),
        "delete" => fill(
            rng.pick(&[
                "delete §",
                "remove §",
                "get rid of §",
                "trash §",
                "erase §",
                "please delete §",
                "throw away §",
            ]),
            &[rng.pick(OBJECTS)],
        ),
        _ => rng
            .pick(&[
                "what time is it",
                "thanks a lot",
                "how are you today",
                "tell me a joke",
                "good night",
                "who made you",
                "what can you do",
                "that was helpful",
                "is it Friday yet",
                "hello there",
            ])
            .to_string(),
    };
    let text = format!("{text}{}", rng.pick(&["", "", "?", ".", " please", " now"]));
    case(noise(rng, &text), label)
}

fn sentiment(rng: &mut Rng) -> Case {
    const PRODUCTS: &[&str] = &[
        "headphones",
        "blender",
        "phone case",
        "desk lamp",
        "backpack",
        "kettle",
        "keyboard",
        "jacket",
        "charger",
        "vacuum",
    ];
    let banks: &[(&str, &[&str])] = &[
        (
            "positive",
            &[
                "I love this §",
                "the § works perfectly",
                "best § I've ever bought",
                "really happy with the §, would buy again",
                "great quality, the § exceeded my expectations",
                "the § is fantastic value for the money",
                "my kids adore the new §",
            ],
        ),
        (
            "negative",
            &[
                "the § broke after two days",
                "worst § ever",
                "total waste of money, the § is junk",
                "very disappointed with the §",
                "the § stopped working and support ignored me",
                "the § smells awful and feels cheap",
                "returning the §, it's terrible",
            ],
        ),
        (
            "neutral",
            &[
                "the § arrived on Tuesday",
                "I bought the § last week",
                "it's a § in dark blue",
                "the § comes in three sizes",
                "does the § come with a cable?",
                "the § weighs about 400 grams",
                "I ordered the § for my brother",
            ],
        ),
    ];
    let (label, core) = pick_label(rng, banks);
    let product = rng.pick(PRODUCTS);
    let text = fill(core, &[product]);
    let text = format!("{text}{}", rng.pick(&["", ".", "!", " .", "..."]));
    case(noise(rng, &text), label)
}

fn urgency(rng: &mut Rng) -> Case {
    let banks: &[(&str, &[&str])] = &[
        (
            "immediate",
            &[
                "the production server is down",
                "customers cannot check out",
                "the database is unresponsive and all writes fail",
                "we found a leaked API key in a public repo",
                "the signed contract must be returned by 5pm today",
                "payments are failing for every user",
                "the backup job deleted yesterday's data",
                "the site is showing other users' data",
            ],
        ),
        (
            "wait",
            &[
                "spring picnic next Friday",
                "new parking policy starts next month",
                "the coffee machine on floor 2 was replaced",
                "slides from last week's all-hands are online",
                "reminder to update your profile photo when you can",
                "monthly newsletter: team highlights",
                "the library will extend its opening hours in June",
                "book club meets next Thursday",
            ],
        ),
    ];
    let (label, core) = pick_label(rng, banks);
    let prefix = if label == "immediate" {
        rng.pick(&[
            "",
            "Urgent: ",
            "URGENT - ",
            "Help: ",
            "ACTION NEEDED: ",
            "Heads up, ",
        ])
    } else {
        rng.pick(&[
            "",
            "FYI: ",
            "Newsletter: ",
            "Reminder: ",
            "Update: ",
            "Heads up, ",
        ])
    };
    let text = format!(
        "{prefix}{core}{}",
        rng.pick(&["", "!", ".", "!!", " - please read"])
    );
    case(noise(rng, &text), label)
}

fn tool_routing(rng: &mut Rng) -> Case {
    const CITIES: &[&str] = &[
        "Berlin", "Tokyo", "Lagos", "Lima", "Oslo", "Chicago", "Madrid", "Seoul",
    ];
    const PEOPLE: &[&str] = &[
        "Sarah",
        "my manager",
        "John",
        "the landlord",
        "Priya",
        "the team",
    ];
    let label = rng.pick(&[
        "web_search",
        "get_weather",
        "calculator",
        "send_email",
        "none",
    ]);
    let text = match label {
        "get_weather" => fill(
            rng.pick(&[
                "what's the weather in §",
                "will it rain in § tomorrow",
                "temperature in § right now",
                "do I need an umbrella in § today",
                "forecast for § this weekend",
            ]),
            &[rng.pick(CITIES)],
        ),
        "calculator" => {
            let a = rng.range(2, 999).to_string();
            let b = rng.range(2, 99).to_string();
            fill(
                rng.pick(&[
                    "what is § times §",
                    "calculate § plus §",
                    "what's § divided by §",
                    "§ minus § equals what",
                    "compute §*§",
                ]),
                &[&a, &b],
            )
        }
        "send_email" => fill(
            rng.pick(&[
                "email § that I'm running late",
                "send a message to § about the meeting",
                "write to § saying the report is ready",
                "let § know by email that the invoice is paid",
            ]),
            &[rng.pick(PEOPLE)],
        ),
        "web_search" => fill(
            rng.pick(&[
                "latest news about §",
                "who won the § game last night",
                "search the web for §",
                "what happened with § today",
            ]),
            &[rng.pick(&[
                "the Lakers",
                "the elections",
                "SpaceX",
                "the chess olympiad",
                "the central bank",
            ])],
        ),
        _ => rng
            .pick(&[
                "tell me a joke",
                "what's a synonym for happy",
                "explain what a noun is",
                "write a haiku about autumn",
                "help me rephrase this sentence more politely",
                "what does 'ephemeral' mean",
                "give me a name for my cat",
            ])
            .to_string(),
    };
    let text = format!("{text}{}", rng.pick(&["", "?", ".", " please"]));
    case(noise(rng, &text), label)
}

fn spam(rng: &mut Rng) -> Case {
    let n = rng.range(100, 5000).to_string();
    let banks: &[(&str, &[&str])] = &[
        (
            "spam",
            &[
                "Congratulations! You've won a $§ gift card, click here to claim",
                "Your account will be suspended, verify your password at secure-login-update.biz",
                "Cheap meds online, no prescription needed",
                "Earn $§ a day working from home, no experience required",
                "You have been selected for a FREE cruise, reply YES now",
                "Dear friend, I need your help transferring $§ million",
                "Lose 10 kg in a week with this one weird trick",
            ],
        ),
        (
            "ham",
            &[
                "Can we move our 1:1 to Thursday?",
                "Here are the notes from today's meeting",
                "Your order #§ has shipped and should arrive Monday",
                "Lunch tomorrow at the usual place?",
                "Attached is the draft contract for your review",
                "The build on main is green again",
                "Reminder: dentist appointment on the 12th at 3pm",
            ],
        ),
    ];
    let (label, core) = pick_label(rng, banks);
    let text = fill(core, &[&n]);
    case(noise(rng, &text), label)
}

fn commit_type(rng: &mut Rng) -> Case {
    const AREAS: &[&str] = &[
        "parser",
        "login form",
        "cache layer",
        "CLI",
        "exporter",
        "scheduler",
        "config loader",
        "HTTP client",
    ];
    let banks: &[(&str, &[&str])] = &[
        (
            "fix",
            &[
                "fix crash in § on empty input",
                "resolve null pointer in §",
                "correct off-by-one error in §",
                "handle timeout properly in §",
                "stop § from leaking file handles",
            ],
        ),
        (
            "feat",
            &[
                "add dark mode to §",
                "implement CSV export in §",
                "introduce retry option for §",
                "support YAML files in §",
                "allow custom headers in §",
            ],
        ),
        (
            "docs",
            &[
                "update README section on §",
                "document § flags",
                "improve docstrings in §",
                "add usage examples for § to the guide",
            ],
        ),
        (
            "refactor",
            &[
                "extract § into its own module",
                "rename § helpers for clarity",
                "simplify § logic without behaviour change",
                "split § into smaller functions",
            ],
        ),
        (
            "test",
            &[
                "add unit tests for §",
                "cover § edge cases in tests",
                "add regression test for § timeouts",
                "make § tests deterministic",
            ],
        ),
        (
            "chore",
            &[
                "bump serde dependency used by §",
                "update CI config for §",
                "reformat § with rustfmt",
                "upgrade build toolchain for §",
            ],
        ),
    ];
    let (label, core) = pick_label(rng, banks);
    let text = fill(core, &[rng.pick(AREAS)]);
    let text = if rng.chance(15) {
        let mut c = text.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or(text)
    } else {
        text
    };
    case(light_noise(rng, &text), label)
}

fn shell_risk(rng: &mut Rng) -> Case {
    const DIRS: &[&str] = &[
        "build",
        "src",
        "logs",
        "data",
        "tmp/cache",
        "projects/app",
        "Downloads",
    ];
    const HOSTS: &[&str] = &[
        "get.example.sh",
        "install.tools.io",
        "raw.example.com/setup",
        "bit.ly/x7abc",
    ];
    let dangerous = rng.chance(50);
    let d = rng.pick(DIRS).to_string();
    let cmd = if dangerous {
        match rng.below(9) {
            0 => "rm -rf /".to_string(),
            1 => format!("rm -rf ~/{d}"),
            2 => format!("dd if=/dev/zero of=/dev/sd{}", rng.pick(&["a", "b", "c"])),
            3 => format!("mkfs.ext4 /dev/sd{}1", rng.pick(&["a", "b"])),
            4 => format!(
                "sudo chmod -R 777 /{}",
                rng.pick(&["etc", "usr", "var", ""])
            ),
            5 => ":(){ :|:& };:".to_string(),
            6 => format!("curl -sL https://{} | sudo bash", rng.pick(HOSTS)),
            7 => format!(
                "git push --force origin {}",
                rng.pick(&["main", "master", "release"])
            ),
            _ => format!(
                "sudo rm -rf /var/lib/{}",
                rng.pick(&["postgresql", "docker", "mysql"])
            ),
        }
    } else {
        match rng.below(9) {
            0 => format!("ls -la {d}"),
            1 => format!("cat {d}/README.md"),
            2 => format!("grep -rn TODO {d}"),
            3 => "git status".to_string(),
            4 => format!("du -sh {d}"),
            5 => format!("cp {d}/config.toml {d}/config.toml.bak"),
            6 => format!("mkdir -p {d}/out"),
            7 => format!("git log --oneline -n {}", rng.range(3, 30)),
            _ => format!("head -n {} {d}/app.log", rng.range(5, 200)),
        }
    };
    case(
        light_noise(rng, &cmd),
        if dangerous { "dangerous" } else { "safe" },
    )
}

fn pii_detect(rng: &mut Rng) -> Case {
    let pii = rng.chance(50);
    let base = rng.pick(&[
        "Please review the attached draft before Friday.",
        "Thanks for the quick turnaround on the slides.",
        "The meeting moved to room 4B.",
        "Our team shipped the new release yesterday.",
        "Can you send me the updated numbers?",
        "The quarterly goals look ambitious but doable.",
    ]);
    let text = if pii {
        let user = rng.pick(&["jane.doe", "mike88", "a.kumar", "lisa_w", "tom"]);
        let item = match rng.below(5) {
            0 => format!(
                "You can reach me at {user}@{}.",
                rng.pick(&["gmail.com", "example.org", "corp.net"])
            ),
            1 => format!(
                "My cell is ({}) 555-{:04}.",
                rng.range(201, 989),
                rng.range(0, 9999)
            ),
            2 => format!(
                "My SSN is {:03}-{:02}-{:04}.",
                rng.range(100, 665),
                rng.range(10, 99),
                rng.range(1000, 9999)
            ),
            3 => format!(
                "Card number 4{:03} {:04} {:04} {:04} expires 09/27.",
                rng.range(0, 999),
                rng.range(0, 9999),
                rng.range(0, 9999),
                rng.range(0, 9999)
            ),
            _ => format!(
                "Ship it to {} {} Street, Springfield.",
                rng.range(3, 9999),
                rng.pick(&["Elm", "Oak", "Maple", "Cedar"])
            ),
        };
        if rng.chance(50) {
            format!("{base} {item}")
        } else {
            format!("{item} {base}")
        }
    } else {
        let extra = rng.pick(&[
            "",
            " Thanks!",
            " The build number is 4512.",
            " See ticket 88231.",
            " Budget is $12,400.",
        ]);
        format!("{base}{extra}")
    };
    case(light_noise(rng, &text), if pii { "PII" } else { "CLEAN" })
}

fn code_language(rng: &mut Rng) -> Case {
    let a = rng.pick(&[
        "total", "count", "users", "items", "result", "path", "score", "buf",
    ]);
    let b = rng.pick(&["orders", "events", "accounts", "logs"]);
    let n = rng.range(1, 500).to_string();
    let banks: &[(&str, &[&str])] = &[
        (
            "python",
            &[
                "def load({b}):\n    return [x for x in {b} if x]",
                "for {a} in range({n}):\n    print({a})",
                "import json\n{a} = json.loads(open('{b}.json').read())",
                "class Store:\n    def __init__(self):\n        self.{a} = {}",
            ],
        ),
        (
            "rust",
            &[
                "fn load({b}: &[u32]) -> Vec<u32> {\n    {b}.iter().copied().collect()\n}",
                "let mut {a} = Vec::with_capacity({n});",
                "for {a} in 0..{n} {\n    println!(\"{}\", {a});\n}",
                "impl Store {\n    pub fn {a}(&self) -> usize { self.{b}.len() }\n}",
            ],
        ),
        (
            "javascript",
            &[
                "const {a} = {b}.filter(x => x != null);",
                "function load({b}) {\n  return {b}.map((x) => x * 2);\n}",
                "for (let i = 0; i < {n}; i++) {\n  console.log({a}[i]);\n}",
                "export default async function {a}() { await fetch('/{b}'); }",
            ],
        ),
        (
            "sql",
            &[
                "SELECT {a} FROM {b} WHERE id > {n};",
                "select count(*) as {a} from {b} group by day",
                "UPDATE {b} SET {a} = {n} WHERE active = true;",
                "CREATE INDEX idx_{a} ON {b} (created_at);",
            ],
        ),
        (
            "bash",
            &[
                "for f in $(ls {b}); do\n  echo \"$f\"\ndone",
                "{a}=$(wc -l < {b}.txt)\necho \"lines: ${a}\"",
                "if [ -f \"{b}.log\" ]; then\n  tail -n {n} {b}.log\nfi",
                "export {a}={n} && ./run.sh \"${a}\"",
            ],
        ),
    ];
    let (label, core) = pick_label(rng, banks);
    let code = core.replace("{a}", a).replace("{b}", b).replace("{n}", &n);
    case(code, label)
}
