//! Shared output helpers: `--json` printing and the store handle every command opens.

use anyhow::{Context, Result};
use paw_store::Store;
use serde::Serialize;

/// `print!` that ends the process quietly (exit 0) when stdout is closed early (`paw ... |
/// head`), where `print!` panics.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` with [`out!`]'s handling of a closed stdout.
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use {out, outln};

pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {error}");
        std::process::exit(1);
    }
}

/// Largest text file a command reads whole (specs, contracts, `paw.toml`): far above any real
/// one, far below what would exhaust memory.
pub const MAX_TEXT_FILE: u64 = 1 << 20;

/// Reads a UTF-8 text file of at most [`MAX_TEXT_FILE`] bytes (never more, whatever its size).
pub fn read_text_file(path: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_TEXT_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_TEXT_FILE {
        anyhow::bail!(
            "{} is larger than {MAX_TEXT_FILE} bytes; it cannot be a spec, contract or project file",
            path.display()
        );
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Prints `value` as one pretty JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).context("encoding JSON output")?
    );
    Ok(())
}

/// The local store (`$PAW_HOME`, default `~/.cache/paw`).
pub fn open_store() -> Result<Store> {
    Store::open_default()
        .context("opening the local paw store (set PAW_HOME to choose another place)")
}

/// `text` with every control character except newline and tab written as an escape
/// (`\u{1b}`), so that text from a program or a model cannot move the cursor, rewrite lines or
/// retitle the terminal when printed.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(text, |c| c == '\n' || c == '\t')
}

/// `text` on one line: newlines, carriage returns and every other control character escaped
/// (batch output, where line N answers input N).
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(text, |c| c == '\t')
}

fn escape_controls(text: &str, keep: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && !keep(c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' if !keep(c) => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && !keep(c) => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// First line of `text`, cut to `max` characters with an ellipsis, control characters escaped.
pub fn summary_line(text: &str, max: usize) -> String {
    let text = terminal_safe(text);
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Bytes in human units (KiB, MiB, GiB).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_cuts_long_first_lines_on_char_boundaries() {
        assert_eq!(summary_line("short\nsecond", 10), "short");
        assert_eq!(summary_line("ééééééé", 4), "ééé…");
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(terminal_safe("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            terminal_safe("name\r\x1b[2K b3:fake"),
            "name\\r\\u{1b}[2K b3:fake"
        );
        assert_eq!(one_line("a\nb\u{9b}c"), "a\\nb\\u{9b}c");
        assert_eq!(
            summary_line("\x1b]0;title\x07rest", 80),
            "\\u{1b}]0;title\\u{7}rest"
        );
    }

    #[test]
    fn human_bytes_picks_the_largest_fitting_unit() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(491_400_064), "468.6 MiB");
    }
}
