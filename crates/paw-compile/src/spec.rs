//! What a spec says about its outputs: an explicit label set ("Return ONLY one of: a, b, c").

/// Parses the label set a spec names, e.g. `Return ONLY one of: positive, negative, neutral.`
/// or `Return ONLY one word: ALERT or QUIET.` or `Return ONLY spam or ham.`. Returns `None`
/// when the spec names no closed set (open generation, extraction, formats).
pub fn label_set(spec: &str) -> Option<Vec<String>> {
    let lower = spec.to_lowercase();
    // Cue phrases, most specific first; the list follows the cue up to the end of the sentence.
    const CUES: [&str; 6] = [
        "only one of:",
        "exactly one of:",
        "one of:",
        "only one word:",
        "return only",
        "output only",
    ];
    for cue in CUES {
        let Some(at) = lower.find(cue) else { continue };
        // Byte offsets agree because to_lowercase keeps ASCII cue positions for ASCII specs;
        // non-ASCII specs before the cue could shift them, so re-check the slice.
        let start = at + cue.len();
        let Some(rest) = spec.get(start..) else {
            continue;
        };
        let sentence = rest.split(['\n']).next().unwrap_or("");
        let sentence = match sentence.find(". ") {
            Some(i) => &sentence[..i],
            None => sentence.trim_end().trim_end_matches('.'),
        };
        if let Some(labels) = split_labels(sentence) {
            return Some(labels);
        }
    }
    None
}

fn split_labels(list: &str) -> Option<Vec<String>> {
    let list = list.replace(" or ", ",");
    let mut labels: Vec<String> = Vec::new();
    for part in list.split(',') {
        let mut l = part.trim();
        // Trailing remarks such as "(lowercase)" are not part of the label.
        if let Some(i) = l.find(" (") {
            l = &l[..i];
        }
        let l = l.trim_matches(|c: char| c == '"' || c == '\'' || c == '`' || c.is_whitespace());
        if l.is_empty() {
            continue;
        }
        // A label is a short token; anything with spaces is prose, not a closed set.
        if l.contains(char::is_whitespace) || l.len() > 32 {
            return None;
        }
        if !labels.iter().any(|x| x == l) {
            labels.push(l.to_string());
        }
    }
    (labels.len() >= 2).then_some(labels)
}

/// The canonical label `output` stands for: exact match first, then case-insensitive, after
/// trimming whitespace and a trailing period. `None` if it is not in the set.
pub fn canonical_label<'a>(labels: &'a [String], output: &str) -> Option<&'a str> {
    let o = output.trim().trim_end_matches('.').trim();
    labels
        .iter()
        .find(|l| l.as_str() == o)
        .or_else(|| labels.iter().find(|l| l.eq_ignore_ascii_case(o)))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Option<Vec<String>> {
        Some(s.iter().map(|x| x.to_string()).collect())
    }

    #[test]
    fn parses_fuzzybench_styles() {
        assert_eq!(
            label_set("Classify a review. Return ONLY one of: positive, negative, neutral. neutral means x."),
            v(&["positive", "negative", "neutral"])
        );
        assert_eq!(
            label_set("Classify one line. Return ONLY one word: ALERT or QUIET.\nALERT means"),
            v(&["ALERT", "QUIET"])
        );
        assert_eq!(
            label_set("Is this spam? Return ONLY spam or ham. spam: x"),
            v(&["spam", "ham"])
        );
        assert_eq!(
            label_set("Interpret a yes/no answer. Return ONLY true or false (lowercase)."),
            v(&["true", "false"])
        );
        assert_eq!(
            label_set(
                "Decide. Output EXACTLY one of: web_search, get_weather, none. get_weather: x"
            ),
            v(&["web_search", "get_weather", "none"])
        );
        assert_eq!(
            label_set("Convert the date to ISO 8601. Output only the date."),
            None
        );
        assert_eq!(
            label_set("Extract the city name. Output just the city name."),
            None
        );
    }

    #[test]
    fn canonicalises() {
        let l = vec!["ALERT".to_string(), "QUIET".to_string()];
        assert_eq!(canonical_label(&l, " alert.\n"), Some("ALERT"));
        assert_eq!(canonical_label(&l, "LOUD"), None);
    }
}
