//! Stage 1: the pseudo-program, a task paragraph plus 3-6 examples in the published
//! `[PSEUDO_PROGRAM]...[END_PSEUDO_PROGRAM]` shape, which is all the interpreter sees of the spec.

use paw_format::INPUT_PLACEHOLDER;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::spec::canonical_label;
use crate::teacher::ChatModel;

/// Examples shown in the pseudo-program: at least this many when the teacher can supply them.
const MIN_EXAMPLES: usize = 4;
/// And never more than this many (the published programs carry 3-6).
const MAX_EXAMPLES: usize = 6;

/// Where a pseudo-program's task paragraph came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The teacher's first answer.
    Teacher,
    /// The teacher's answer when asked for a shorter one.
    TeacherShort,
    /// The spec itself.
    Spec,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Teacher => "teacher",
            Self::TeacherShort => "teacher-short",
            Self::Spec => "spec",
        })
    }
}

/// A parsed pseudo-program; rendered by [`PseudoProgram::render`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PseudoProgram {
    pub task: String,
    pub examples: Vec<(String, String)>,
    pub source: Source,
}

impl PseudoProgram {
    pub fn render(&self) -> String {
        let mut s = format!("[PSEUDO_PROGRAM]\nTask: {}\n", self.task.trim());
        if !self.examples.is_empty() {
            s.push_str("\nExamples:\n");
            for (i, o) in &self.examples {
                s.push_str(&format!("Input: {i}\nOutput: {o}\n\n"));
            }
            s.pop();
        }
        s.push_str("[END_PSEUDO_PROGRAM]");
        s
    }
}

/// The user turn of every call: the published layout with the input placeholder.
pub fn user_turn(pseudo_program: &str) -> String {
    format!("{pseudo_program}\n\n[INPUT]\n{INPUT_PLACEHOLDER}\n[END_INPUT]")
}

/// Inputs for [`write`].
pub(crate) struct Request<'a> {
    pub spec: &'a str,
    pub user_examples: &'a [(String, String)],
    pub labels: Option<&'a [String]>,
    /// Token budget of the rendered pseudo-program, counted with the interpreter's tokenizer.
    pub budget: usize,
    pub count_tokens: &'a dyn Fn(&str) -> Result<usize>,
}

fn teacher_prompt(req: &Request<'_>, short: bool) -> String {
    let mut p = format!(
        "You write instructions for a small AI model that performs one text-processing task.\n\n\
         The task, as specified by the user:\n\"\"\"\n{}\n\"\"\"\n\n",
        req.spec.trim()
    );
    if let Some(labels) = req.labels {
        p.push_str(&format!(
            "The output is always exactly one of: {}.\n\n",
            labels.join(", ")
        ));
    }
    if short {
        p.push_str(
            "Rewrite it as a task description of at most 50 words that says exactly what the \
             output must be, then give 4 examples with short, different inputs",
        );
    } else {
        p.push_str(
            "Rewrite it as a clear, self-contained task description of 2-4 sentences that says \
             exactly what the output must be, then give 5 short examples with different inputs",
        );
    }
    p.push_str(
        ", covering different outputs. Use exactly this layout and nothing else:\n\n\
         Task: <description>\n\nExamples:\nInput: <one-line input>\nOutput: <the exact output>\n\n\
         Input: <one-line input>\nOutput: <the exact output>",
    );
    p
}

fn clean(s: &str) -> String {
    s.trim()
        .trim_matches(|c: char| c == '`' || c == '"' || c == '<' || c == '>')
        .trim()
        .to_string()
}

/// Parses the teacher's answer: the task paragraph and complete one-line Input/Output pairs.
/// A degenerate answer (repeated or unfinished examples) keeps only its distinct complete pairs.
pub(crate) fn parse(answer: &str) -> (Option<String>, Vec<(String, String)>) {
    let task = answer.find("Task:").map(|i| {
        let rest = &answer[i + 5..];
        let end = ["Examples:", "Input:"]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
            .unwrap_or(rest.len());
        rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
    });
    let mut examples: Vec<(String, String)> = Vec::new();
    let mut pending: Option<String> = None;
    for line in answer.lines() {
        let line = line.trim().trim_start_matches(['-', '*']).trim();
        if let Some(x) = line.strip_prefix("Input:") {
            pending = Some(clean(x));
        } else if let Some(y) = line.strip_prefix("Output:") {
            if let Some(x) = pending.take() {
                let y = clean(y);
                if !x.is_empty() && !y.is_empty() {
                    examples.push((x, y));
                }
            }
        }
    }
    (task.filter(|t| !t.is_empty()), examples)
}

/// Merges user and teacher examples: user examples first (they take precedence), then
/// distinct teacher examples that obey the label set, preferring labels not yet shown.
fn merge(
    user: &[(String, String)],
    teacher: Vec<(String, String)>,
    labels: Option<&[String]>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = user.iter().take(MAX_EXAMPLES).cloned().collect();
    let seen =
        |out: &[(String, String)], x: &str| out.iter().any(|(i, _)| i.eq_ignore_ascii_case(x));
    let mut candidates: Vec<(String, String)> = Vec::new();
    for (x, y) in teacher {
        let y = match labels {
            Some(l) => match canonical_label(l, &y) {
                Some(c) => c.to_string(),
                None => continue,
            },
            None => y,
        };
        if !seen(&out, &x) && !seen(&candidates, &x) {
            candidates.push((x, y));
        }
    }
    while out.len() < MIN_EXAMPLES && !candidates.is_empty() {
        // Prefer an output not shown yet, so every label appears at least once.
        let pick = candidates
            .iter()
            .position(|(_, y)| !out.iter().any(|(_, o)| o == y))
            .unwrap_or(0);
        out.push(candidates.remove(pick));
    }
    out
}

/// Writes the pseudo-program. With a teacher: ask it (greedy); if the result exceeds the token
/// budget, ask again for a shorter one; then drop surplus examples; only if it still does not
/// fit, or the teacher gave no task paragraph, the spec itself becomes the task paragraph.
/// Without a teacher: the spec plus the user's examples.
pub(crate) fn write(teacher: Option<&ChatModel>, req: &Request<'_>) -> Result<PseudoProgram> {
    let fit = |mut p: PseudoProgram| -> Result<Option<PseudoProgram>> {
        loop {
            if (req.count_tokens)(&p.render())? <= req.budget {
                return Ok(Some(p));
            }
            // Drop teacher examples (the ones after the user's) before giving up on this text.
            if p.examples.len() > 3 && p.examples.len() > req.user_examples.len() {
                p.examples.pop();
            } else {
                return Ok(None);
            }
        }
    };
    let mut teacher_examples = Vec::new();
    if let Some(t) = teacher {
        for (short, source) in [(false, Source::Teacher), (true, Source::TeacherShort)] {
            let prompt = teacher_prompt(req, short);
            // The budget plus a margin for the layout; a degenerate answer stops there.
            let max = (req.budget + 60) as u32;
            let answer = t
                .ask("", &[prompt], max, 0.0, 0, false, |_| {})?
                .pop()
                .unwrap_or_default();
            let (task, examples) = parse(&answer);
            tracing::debug!(%answer, %source, "teacher pseudo-program");
            teacher_examples.extend(examples.iter().cloned());
            // A "task" of a few words (e.g. just the label names) restates nothing.
            let Some(task) = task.filter(|t| t.split_whitespace().count() >= 6) else {
                continue;
            };
            let p = PseudoProgram {
                task,
                examples: merge(req.user_examples, examples, req.labels),
                source,
            };
            if let Some(p) = fit(p)? {
                return Ok(p);
            }
            tracing::info!(
                %source,
                "pseudo-program over budget; asking for a shorter one"
            );
        }
    }
    let p = PseudoProgram {
        task: req.spec.split_whitespace().collect::<Vec<_>>().join(" "),
        examples: merge(req.user_examples, teacher_examples, req.labels),
        source: Source::Spec,
    };
    // Over budget even so: keep it whole rather than cut the spec; the window check in
    // paw-rt still guards the total length.
    Ok(fit(p.clone())?.unwrap_or(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_dedupes_and_skips_unfinished() {
        let a = "Task: Classify a line.\nIt is ALERT or QUIET.\n\nExamples:\nInput: disk full\nOutput: ALERT\n\nInput: step 5\nOutput: `QUIET`\nInput: step 6\n";
        let (task, ex) = parse(a);
        assert_eq!(
            task.as_deref(),
            Some("Classify a line. It is ALERT or QUIET.")
        );
        assert_eq!(
            ex,
            vec![
                ("disk full".into(), "ALERT".into()),
                ("step 5".into(), "QUIET".into())
            ]
        );
    }

    #[test]
    fn merge_prefers_user_and_covers_labels() {
        let labels = vec!["A".to_string(), "B".to_string()];
        let user = vec![("u1".to_string(), "A".to_string())];
        let teacher = vec![
            ("t1".to_string(), "a".to_string()),
            ("U1".to_string(), "B".to_string()),
            ("t2".to_string(), "c".to_string()),
            ("t3".to_string(), "B".to_string()),
            ("t4".to_string(), "A".to_string()),
        ];
        let m = merge(&user, teacher, Some(&labels));
        assert_eq!(m[0], ("u1".to_string(), "A".to_string()));
        assert_eq!(m[1], ("t3".to_string(), "B".to_string()));
        assert_eq!(m.len(), 4);
        assert!(m.iter().all(|(_, y)| y == "A" || y == "B"));
    }

    #[test]
    fn renders_published_shape() {
        let p = PseudoProgram {
            task: "Do x.".into(),
            examples: vec![("a".into(), "b".into()), ("c".into(), "d".into())],
            source: Source::Spec,
        };
        assert_eq!(
            p.render(),
            "[PSEUDO_PROGRAM]\nTask: Do x.\n\nExamples:\nInput: a\nOutput: b\n\nInput: c\nOutput: d\n[END_PSEUDO_PROGRAM]"
        );
    }
}
