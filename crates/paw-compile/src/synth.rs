//! Stage 2: training data. User examples first; then inputs the teacher writes. When the spec
//! names its label set, the teacher writes an input *for* a chosen label (label-conditioned
//! generation, sampled, one item per request), so labels are right by construction; otherwise
//! the teacher writes inputs and answers them. Every item must pass the output checks.
//!
//! Small teachers copy the examples they are shown: asked for forty log lines that deserve
//! ALERT, the 1.5B wrote thirty variations of the one `[eval]` line it had seen. So, for a label
//! set, the teacher first lists distinct *kinds* of input per label, and each request then asks
//! for one input of one kind.

use serde::{Deserialize, Serialize};

use crate::error::{CompileError, Result};
use crate::options::Labelling;
use crate::spec::canonical_label;
use crate::teacher::ChatModel;

/// Where a training example came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Given by the user (trusted).
    User,
    /// Input written by the teacher for a chosen label.
    LabelConditioned,
    /// Input written by the teacher, output the teacher's own answer.
    TeacherAnswered,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub input: String,
    pub output: String,
    pub origin: Origin,
}

/// The data a program was trained and validated on (what `--keep-data` writes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingData {
    pub train: Vec<Example>,
    /// Held out: never trained on; used for early stopping and the compile report.
    pub validation: Vec<Example>,
    /// Items the checks dropped, with the reason.
    pub rejected: Vec<(String, String)>,
    /// With `relabel`: the labels the teacher gave too few of its own inputs (fewer than
    /// [`SynthRequest::relabel_min_per_label`]), when that made the
    /// compile keep the labels the inputs were written for instead (see [`synthesize`]).
    #[serde(default)]
    pub relabel_refused: Vec<String>,
    /// With [`SynthRequest::starved_label_rounds`]: the labels asked for again because the
    /// teacher's answers first gave them too few items, with the inputs asked for in all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabel_asked_again: Vec<(String, usize)>,
    /// With a calibrated [`Labelling`]: the teacher's prior label probabilities (its bias,
    /// divided out of every answer; see [`calibrated_labels`]), as `label=p,...`.
    #[serde(default)]
    pub teacher_prior: Option<String>,
}

/// Variation hints cycled through the requests: small teachers repeat themselves otherwise.
const STYLES: [&str; 8] = [
    "Make it short.",
    "Make it realistic and specific, with concrete names or numbers.",
    "Write it informally, with a typo or odd capitalisation.",
    "Make it a borderline case that is still clearly this answer.",
    "Make it longer and detailed.",
    "Use unusual wording or formatting.",
    "Make it look like real data copied from a real system.",
    "Make it different from the typical example.",
];

pub(crate) struct SynthRequest<'a> {
    pub spec: &'a str,
    pub user_examples: &'a [(String, String)],
    /// Examples to show the teacher as a format reference (the pseudo-program's).
    pub reference: &'a [(String, String)],
    pub labels: Option<&'a [String]>,
    /// Teacher requests per label (closed set) or in total (open outputs).
    pub requests: usize,
    /// Drop label-conditioned items the teacher, asked directly, labels differently.
    pub agreement_filter: bool,
    /// Label label-conditioned items with the teacher's direct answer instead.
    pub relabel: bool,
    /// How the teacher's direct answer to an input of a label set is read.
    pub labelling: Labelling,
    /// With `relabel`: fewest training items the teacher's answers must give each label for
    /// relabelling to apply (see [`labels_rarely_answered`]).
    pub relabel_min_per_label: usize,
    /// With `relabel`: rounds of extra requests for the labels [`labels_rarely_answered`]
    /// finds, before falling back to the written-for labels (see [`starved_label_requests`]).
    pub starved_label_rounds: usize,
    /// Kinds of input the teacher lists first, per label (label sets only); 0 = no kinds.
    pub kinds: usize,
    /// Held-out requests in total (spread over the labels of a label set); 0 holds out every
    /// 4th training item instead.
    pub held_out: usize,
    /// Teacher training items wanted: fewer after the first round of requests (and the checks,
    /// relabelling and balancing) asks again, up to [`TOP_UP_ROUNDS`] times; 0 never does.
    pub train_items: usize,
    /// Inputs each training-data request asks for, as a numbered list (1: one input per
    /// request). A list lets the teacher see the inputs it already wrote in the same reply.
    pub inputs_per_request: usize,
    pub seed: u64,
}

fn reference_block(reference: &[(String, String)]) -> String {
    if reference.is_empty() {
        return String::new();
    }
    let mut s = String::from("For reference, some examples of the task:\n");
    for (i, o) in reference.iter().take(4) {
        s.push_str(&format!("Input: {i}\nOutput: {o}\n"));
    }
    s.push('\n');
    s
}

fn spec_block(spec: &str) -> String {
    format!("Task specification:\n\"\"\"\n{}\n\"\"\"\n\n", spec.trim())
}

/// The beginning every input request shares (the part the teacher prefills once).
fn input_prompt_shared(req: &SynthRequest<'_>) -> String {
    spec_block(req.spec) + &reference_block(req.reference)
}

/// The rest of one input request for `n` inputs. `kind`: the kind of input wanted (from
/// [`kinds_prompt_tail`]).
fn input_prompt_tail(label: Option<&str>, kind: Option<&str>, k: usize, n: usize) -> String {
    let what = match n {
        1 => "one new, realistic input".to_string(),
        n => format!("{n} new, realistic inputs"),
    };
    let mut p = match label {
        Some(l) => format!("Write {what} for this task whose correct output is exactly: {l}\n"),
        None => format!("Write {what} for this task.\n"),
    };
    if let Some(kind) = kind {
        p.push_str(&format!("The input must be of this kind: {kind}.\n"));
    }
    if n > 1 {
        // One style per item: a list without them came back as variations of one sentence
        // ("The product is ..." for most sentiment items; 70% of dates in one year).
        p.push_str(
            "Make each one different from the others (wording, length, names, numbers, dates), \
             each in its own style:\n",
        );
        for i in 0..n {
            let style = STYLES[(k * n + i) % STYLES.len()];
            p.push_str(&format!("- input {}: {style}\n", i + 1));
        }
        p.push_str(&format!("(Variant {}.)\n", k + 1));
    } else {
        // The style and variant number also keep requests of the same kind from being
        // identical prompts (which would sample identical replies in one batch).
        p.push_str(&format!(
            "{} (Variant {}.)\n",
            STYLES[k % STYLES.len()],
            k + 1
        ));
    }
    if n > 1 {
        p.push_str(&format!(
            "Reply with a numbered list, 1 to {n}, one input per line, without quotes or \
             explanations."
        ));
    } else {
        p.push_str("Reply with the input text only, on one line, without quotes or explanations.");
    }
    p
}

/// The inputs in a reply to an input request for `n` inputs: its first meaningful line for one,
/// else the items of its numbered list (at most `n`).
fn reply_inputs(reply: &str, n: usize) -> Vec<String> {
    if n <= 1 {
        return vec![first_line(reply)];
    }
    list_items(reply)
        .map(|i| i.trim_matches(['"', '`', '\'']).trim().to_string())
        .take(n)
        .collect()
}

/// The items of a numbered or bulleted list in `reply`, numbering and bullets stripped.
fn list_items(reply: &str) -> impl Iterator<Item = &str> {
    reply.lines().filter_map(|line| {
        let is_item = line
            .trim_start()
            .starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '*');
        let item = line
            .trim()
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start_matches(['.', ')', '-', '*', ':'])
            .trim();
        (is_item && !item.is_empty()).then_some(item)
    })
}

/// One held-out request: an input that is hard to get right. Held-out items come from their
/// own request, not from the prompts that wrote the training data: a held-out split drawn from
/// the training generator cannot see what that generator never produces (date-iso's held-out
/// items were all of its training mould and scored 100%; real inputs 7 of 12).
fn held_out_prompt_tail(label: Option<&str>, k: usize) -> String {
    let mut p = String::from(
        "Write one new input for this task that a careless program would get wrong: an \
         unusual, tricky or edge case, unlike the examples above",
    );
    match label {
        Some(l) => p.push_str(&format!(", whose correct output is still exactly: {l}\n")),
        None => p.push_str(", that still has one clear correct output.\n"),
    }
    p.push_str(&format!(
        "{} (Hard case {}.)\n",
        HELD_OUT_STYLES[k % HELD_OUT_STYLES.len()],
        k + 1
    ));
    p.push_str("Reply with the input text only, on one line, without quotes or explanations.");
    p
}

/// Hints cycled through the held-out requests: the ways real inputs differ from typical ones.
const HELD_OUT_STYLES: [&str; 6] = [
    "Use a format or wording that is less common.",
    "Add noise: extra words, odd punctuation or casing, a typo.",
    "Make it long, with the deciding detail in the middle.",
    "Make it very short.",
    "Make it ambiguous at first glance but clear on a careful reading.",
    "Use values or names unlike the ones in the examples.",
];

/// Asks for a numbered list of `n` distinct kinds of input whose output is `label` (the tail
/// of a message that begins with [`spec_block`]).
fn kinds_prompt_tail(label: &str, n: usize) -> String {
    format!(
        "List {n} different kinds of input that this task must handle whose correct output is \
         exactly: {label}. Make them \
         varied: common cases, rarer cases, borderline cases, and messy real-world ones (typos, \
         odd casing, extra spaces, format drift). One short description per line, numbered 1 \
         to {n}, nothing else."
    )
}

/// The kinds a numbered-list reply names: numbering and bullets stripped, duplicates and
/// over-long lines dropped, at most `n`.
fn parse_kinds(reply: &str, n: usize) -> Vec<String> {
    let mut kinds: Vec<String> = Vec::new();
    for item in list_items(reply) {
        let kind = item
            .trim_matches(['*', '"', '`'])
            .trim()
            .trim_end_matches('.');
        if kind.is_empty() || kind.len() > 160 {
            continue;
        }
        if !kinds.iter().any(|k| k.eq_ignore_ascii_case(kind)) {
            kinds.push(kind.to_string());
        }
        if kinds.len() == n {
            break;
        }
    }
    kinds
}

/// The labels the teacher at `teacher` gives `inputs` as a compile reads them, once per
/// labelling of `labellings` (the spec and `reference` examples shown first): each a label of
/// `labels`, or `None` for an answer outside the set. For measuring labelling against true
/// labels; the teacher is loaded once.
pub fn teacher_labels(
    teacher: &std::path::Path,
    spec: &str,
    reference: &[(String, String)],
    labels: &[String],
    inputs: &[&str],
    labellings: &[Labelling],
) -> Result<Vec<Vec<Option<String>>>> {
    let teacher = ChatModel::load(teacher)?;
    labellings
        .iter()
        .map(|&labelling| {
            let answers = direct_answers(
                &teacher,
                spec,
                reference,
                Some(labels),
                inputs,
                labelling,
                &mut None,
            )?;
            Ok(answers
                .iter()
                .map(|a| canonical_label(labels, a).map(str::to_string))
                .collect())
        })
        .collect()
}

/// The teacher's direct answers to `inputs`: for a label set read with a calibrated
/// [`Labelling`] (and labels its first token tells apart), the calibrated labels, the prior
/// used kept in `prior` (one given there is reused); otherwise its greedy replies.
fn direct_answers(
    teacher: &ChatModel,
    spec: &str,
    reference: &[(String, String)],
    labels: Option<&[String]>,
    inputs: &[&str],
    labelling: Labelling,
    prior: &mut Option<Vec<f32>>,
) -> Result<Vec<String>> {
    if let Some(labels) = labels.filter(|_| labelling != Labelling::Answer) {
        if let Some(answers) =
            calibrated_labels(teacher, spec, reference, labels, inputs, labelling, prior)?
        {
            return Ok(answers);
        }
    }
    direct_replies(teacher, spec, reference, labels, inputs)
}

/// The teacher's one-shot replies to `inputs` (greedy): the spec and the reference examples,
/// then `Input: ...` and `Reply with the output only.` JSON answers span lines (the 1.5B
/// pretty-prints them), so only other outputs stop at the first newline: with that stop,
/// event-json's teacher gave 45 empty answers of 48 ("```json").
pub(crate) fn direct_replies(
    teacher: &ChatModel,
    spec: &str,
    reference: &[(String, String)],
    labels: Option<&[String]>,
    inputs: &[&str],
) -> Result<Vec<String>> {
    let shared = format!("{}\n\n{}", spec.trim(), reference_block(reference));
    let tails: Vec<String> = inputs.iter().map(|i| direct_tail(i)).collect();
    let one_line = !json_outputs(reference);
    teacher.ask(
        &shared,
        &tails,
        answer_tokens(labels),
        0.0,
        0,
        one_line,
        |_| {},
    )
}

/// Inputs that carry no content: the teacher's label probabilities on them are its bias.
const CONTENT_FREE_INPUTS: [&str; 3] = ["N/A", "", "[MASK]"];

/// The teacher's label for each input, read from its first answer token and calibrated
/// (Zhao et al. 2021, "Calibrate before use"): each label's probability is divided by the
/// teacher's prior probability of it and the largest ratio wins. A teacher that leans to one
/// label (the 1.5B answered ALERT for nearly every log line) then loses that lean. The prior
/// is `prior` if given, else (and then kept there) the mean probabilities on
/// [`CONTENT_FREE_INPUTS`] ([`Labelling::Calibrated`]) or on `inputs` themselves
/// ([`Labelling::BatchCalibrated`]). `None` when the labels cannot be told apart by their
/// first token (the caller decodes the answer instead).
fn calibrated_labels(
    teacher: &ChatModel,
    spec: &str,
    reference: &[(String, String)],
    labels: &[String],
    inputs: &[&str],
    labelling: Labelling,
    prior: &mut Option<Vec<f32>>,
) -> Result<Option<Vec<String>>> {
    let shared = format!("{}\n\n{}", spec.trim(), reference_block(reference));
    let content_free: &[&str] = match (prior.as_ref(), labelling) {
        (None, Labelling::Calibrated) => &CONTENT_FREE_INPUTS,
        _ => &[],
    };
    let tails: Vec<String> = content_free
        .iter()
        .chain(inputs)
        .map(|i| direct_tail(i))
        .collect();
    let Some(probabilities) = teacher.label_probabilities(&shared, &tails, labels)? else {
        return Ok(None);
    };
    let (free, scored) = probabilities.split_at(content_free.len());
    let mean = |rows: &[Vec<f32>]| -> Vec<f32> {
        (0..labels.len())
            .map(|l| rows.iter().map(|p| p[l]).sum::<f32>() / rows.len().max(1) as f32)
            .collect()
    };
    let prior = prior.get_or_insert_with(|| match labelling {
        Labelling::BatchCalibrated => mean(scored),
        _ => mean(free),
    });
    Ok(Some(
        scored
            .iter()
            .map(|p| labels[calibrated_choice(p, prior)].clone())
            .collect(),
    ))
}

/// A prior as the compile report shows it: `label=p,...`.
fn prior_text(labels: &[String], prior: &[f32]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .zip(prior)
        .map(|(l, p)| format!("{l}={p:.3}"))
        .collect();
    parts.join(",")
}

/// The label index with the largest probability over its prior (the first on a tie; a prior
/// of zero counts as a tiny one).
fn calibrated_choice(probabilities: &[f32], prior: &[f32]) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, (&p, &q)) in probabilities.iter().zip(prior).enumerate() {
        let ratio = p / q.max(1e-6);
        if ratio > best.1 {
            best = (i, ratio);
        }
    }
    best.0
}

/// The end of a direct question about `input` (after the spec and the reference examples).
fn direct_tail(input: &str) -> String {
    format!("Input: {input}\n\nReply with the output only.")
}

/// Token limit of a direct answer: labels are short; open outputs may be long.
fn answer_tokens(labels: Option<&[String]>) -> u32 {
    if labels.is_some() {
        16
    } else {
        128
    }
}

/// First meaningful line of a model reply, without code fences, labels or quotes.
pub(crate) fn first_line(reply: &str) -> String {
    let line = reply
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("```"))
        .unwrap_or("");
    let line = line
        .strip_prefix("Input:")
        .or_else(|| line.strip_prefix("Output:"))
        .unwrap_or(line);
    line.trim()
        .trim_matches(|c: char| c == '"' || c == '`' || c == '\'')
        .trim()
        .to_string()
}

/// Whether every reference output is a JSON object or array: the task's outputs are JSON.
fn json_outputs(reference: &[(String, String)]) -> bool {
    !reference.is_empty()
        && reference
            .iter()
            .all(|(_, o)| o.starts_with('{') || o.starts_with('['))
}

/// The output a teacher's reply gives. For JSON outputs: the first complete JSON value in the
/// reply, compacted (the 1.5B pretty-prints JSON over several lines: all 20 of its direct
/// answers on event-json, kv-json and filter-json; the first line alone is a lone `{`).
/// Otherwise, and when no JSON value parses: the reply's first meaningful line.
pub(crate) fn answer_output(reply: &str, reference: &[(String, String)]) -> String {
    if json_outputs(reference) {
        if let Some(json) = first_json_value(reply) {
            return json;
        }
    }
    first_line(reply)
}

/// The first JSON object or array in `text` that parses, with the whitespace between its
/// tokens removed (strings, key order and number spellings kept as written).
fn first_json_value(text: &str) -> Option<String> {
    text.match_indices(['{', '[']).find_map(|(start, _)| {
        let mut values =
            serde_json::Deserializer::from_str(&text[start..]).into_iter::<serde::de::IgnoredAny>();
        match values.next() {
            Some(Ok(_)) => Some(compact_json(&text[start..start + values.byte_offset()])),
            _ => None,
        }
    })
}

/// Removes whitespace outside strings from valid JSON text.
fn compact_json(json: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::with_capacity(json.len()), false, false);
    for c in json.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

/// Output checks for open tasks: the teacher's answer must look like the examples' outputs.
fn format_problem(output: &str, reference: &[(String, String)]) -> Option<&'static str> {
    if output.is_empty() {
        return Some("empty output");
    }
    if output.contains("```") {
        return Some("code fence in output");
    }
    if json_outputs(reference) {
        if serde_json::from_str::<serde_json::Value>(output).is_err() {
            return Some("output is not valid JSON");
        }
        if output.contains('\n') {
            return Some("JSON output is not compact");
        }
    }
    None
}

fn norm_key(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Builds the training data. `on_progress(done, total)` reports teacher requests.
pub(crate) fn synthesize(
    teacher: Option<&ChatModel>,
    req: &SynthRequest<'_>,
    mut on_progress: impl FnMut(usize, usize),
) -> Result<TrainingData> {
    let mut data = TrainingData::default();
    // The calibrated labellings' prior, estimated once and reused by later rounds.
    let mut prior: Option<Vec<f32>> = None;
    let mut seen: Vec<String> = Vec::new();
    let mut user = user_examples(req, &mut seen, &mut data.rejected);
    let Some(teacher) = teacher else {
        data.train = user;
        return Ok(data);
    };

    // Requests: for each label, `requests` inputs; or `requests` open inputs.
    let targets = request_targets(req.labels, req.requests);
    // Held-out requests are a total: spread over the labels of a label set.
    let held_per = req
        .labels
        .map_or(req.held_out, |l| req.held_out.div_ceil(l.len().max(1)));
    let held_targets = request_targets(req.labels, held_per);
    let kinds = input_kinds(teacher, req)?;
    let (replies, held_replies) = request_inputs(
        teacher,
        req,
        &targets,
        &held_targets,
        &kinds,
        &mut on_progress,
    )?;
    let per_request = req.inputs_per_request;
    let mut synth = screen_inputs(
        &targets,
        &replies,
        per_request,
        &mut seen,
        &mut data.rejected,
    );
    let mut held = screen_inputs(
        &held_targets,
        &held_replies,
        1,
        &mut seen,
        &mut data.rejected,
    );

    let mut asked = targets.len() + held_targets.len();
    // Open outputs, or the agreement check: ask the teacher directly (greedy).
    let need_answers = req.labels.is_none() || req.agreement_filter || req.relabel;
    if need_answers {
        let mut conditioned = (synth.clone(), held.clone());
        let mut rejected = Vec::new();
        let [mut answered, answered_held] =
            answer_or_agree(teacher, req, [synth, held], &mut rejected, &mut prior)?;
        let starved = |conditioned: &[Example], answered: &[Example]| match req
            .labels
            .filter(|_| req.relabel)
        {
            Some(labels) => {
                labels_rarely_answered(labels, conditioned, answered, req.relabel_min_per_label)
            }
            None => Vec::new(),
        };
        let mut refused = starved(&conditioned.0, &answered);
        for round in 1..=req.starved_label_rounds {
            let Some(labels) = req.labels.filter(|_| !refused.is_empty()) else {
                break;
            };
            let more = starved_label_requests(labels, &refused, &conditioned.0, &answered, req);
            if more.is_empty() {
                break;
            }
            for label in more.iter().filter_map(|(l, _)| *l) {
                let asked_again = &mut data.relabel_asked_again;
                match asked_again.iter_mut().find(|(l, _)| l == label) {
                    Some((_, total)) => *total += req.inputs_per_request,
                    None => asked_again.push((label.to_string(), req.inputs_per_request)),
                }
            }
            tracing::info!(
                round,
                ?refused,
                requests = more.len(),
                "asking the teacher again for inputs of the labels its answers starve"
            );
            // Numbered past the top-up rounds: other kinds, styles and samples than theirs.
            let items = request_round(
                teacher,
                req,
                &kinds,
                &more,
                TOP_UP_ROUNDS + round,
                &mut asked,
                &mut seen,
                &mut data.rejected,
                &mut on_progress,
            )?;
            conditioned.0.extend(items.iter().cloned());
            let [more_answered] =
                answer_or_agree(teacher, req, [items], &mut rejected, &mut prior)?;
            answered.extend(more_answered);
            refused = starved(&conditioned.0, &answered);
        }
        if refused.is_empty() {
            (synth, held) = (answered, answered_held);
            data.rejected.extend(rejected);
        } else {
            // A teacher that answers (almost) no input with a label (log-alert: the 1.5B
            // answered ALERT for every line it wrote, QUIET ones included) would teach its bias
            // as the task, and balancing would cut every other label to the rare one's count.
            tracing::warn!(
                ?refused,
                min = req.relabel_min_per_label,
                "the teacher answers too few of its own inputs with these labels; keeping the \
                 labels the inputs were written for"
            );
            (synth, held) = conditioned;
            data.relabel_refused = refused;
        }
    }
    // Relabelled items follow the teacher's skew: cutting to the rarest label starves them.
    let ratio = if req.relabel && data.relabel_refused.is_empty() {
        RELABEL_BALANCE_RATIO
    } else {
        1
    };
    for round in 1..=TOP_UP_ROUNDS {
        let Some(more) = top_up_targets(req, ratio, &synth) else {
            break;
        };
        tracing::info!(
            round,
            requests = more.len(),
            have = synth.len(),
            "topping up the training data"
        );
        let items = request_round(
            teacher,
            req,
            &kinds,
            &more,
            round,
            &mut asked,
            &mut seen,
            &mut data.rejected,
            &mut on_progress,
        )?;
        let items = if need_answers && data.relabel_refused.is_empty() {
            let [answered] =
                answer_or_agree(teacher, req, [items], &mut data.rejected, &mut prior)?;
            answered
        } else {
            items
        };
        synth.extend(items);
    }
    data.teacher_prior = req
        .labels
        .zip(prior.as_deref())
        .map(|(labels, prior)| prior_text(labels, prior));
    if let Some(labels) = req.labels {
        balance_labels(labels, ratio, &mut synth);
    }
    if synth.is_empty() && user.is_empty() {
        return Err(CompileError::NoValidData(format!(
            "{} teacher items, all rejected",
            replies.len()
        )));
    }

    let (train, validation) = if held.is_empty() {
        hold_out(synth, req.labels.is_some())
    } else {
        (synth, held)
    };
    user.extend(train);
    data.validation = validation;
    data.train = user;
    Ok(data)
}

/// The user's examples, outputs mapped to the label set's spelling; those outside it are
/// rejected.
fn user_examples(
    req: &SynthRequest<'_>,
    seen: &mut Vec<String>,
    rejected: &mut Vec<(String, String)>,
) -> Vec<Example> {
    let mut user = Vec::new();
    for (i, o) in req.user_examples {
        let output = match req.labels {
            Some(l) => match canonical_label(l, o) {
                Some(c) => c.to_string(),
                None => {
                    rejected.push((i.clone(), format!("user output `{o}` not in the label set")));
                    continue;
                }
            },
            None => o.clone(),
        };
        seen.push(norm_key(i));
        user.push(Example {
            input: i.clone(),
            output,
            origin: Origin::User,
        });
    }
    user
}

/// Kinds of input, for label sets only: one list per label, sampled, so that a greedy list
/// cannot degenerate into repetition. (With one list for a whole open-output task, ticker's
/// compile rejected 30 of 48 items and its program lost 20 points on the tests.)
fn input_kinds(teacher: &ChatModel, req: &SynthRequest<'_>) -> Result<Vec<Vec<String>>> {
    let Some(labels) = req.labels.filter(|_| req.kinds > 0) else {
        return Ok(Vec::new());
    };
    let tails: Vec<String> = labels
        .iter()
        .map(|l| kinds_prompt_tail(l, req.kinds))
        .collect();
    let budget = (req.kinds * 24) as u32;
    let seed = req.seed ^ 0x6b69_6e64;
    let shared = spec_block(req.spec);
    let replies = teacher.ask(&shared, &tails, budget, 0.7, seed, false, |_| {})?;
    let kinds: Vec<Vec<String>> = replies.iter().map(|r| parse_kinds(r, req.kinds)).collect();
    tracing::debug!(?kinds, "kinds of input");
    Ok(kinds)
}

/// The teacher's replies to one input request per target (a label, or `None` for open
/// outputs), each with a kind of input or a style hint, and to one held-out request per
/// held-out target; one batched call for both, as they share the prompt's beginning.
fn request_inputs(
    teacher: &ChatModel,
    req: &SynthRequest<'_>,
    targets: &[Option<&str>],
    held_targets: &[Option<&str>],
    kinds: &[Vec<String>],
    on_progress: &mut impl FnMut(usize, usize),
) -> Result<(Vec<String>, Vec<String>)> {
    let per = req.labels.map_or(1, <[String]>::len);
    let mut tails: Vec<String> = targets
        .iter()
        .enumerate()
        .map(|(n, l)| {
            let (group, k) = (n % per, n / per);
            let kind = kinds
                .get(group)
                .filter(|g| !g.is_empty())
                .map(|g| g[k % g.len()].as_str());
            input_prompt_tail(*l, kind, k, req.inputs_per_request)
        })
        .collect();
    tails.extend(
        held_targets
            .iter()
            .enumerate()
            .map(|(n, l)| held_out_prompt_tail(*l, n / per)),
    );
    let total = tails.len();
    let shared = input_prompt_shared(req);
    // List replies span lines; the held-out requests share the batch, so they stop at the
    // token budget and their first line is taken.
    let list = req.inputs_per_request > 1;
    let mut replies = teacher.ask(
        &shared,
        &tails,
        input_tokens(req.inputs_per_request),
        0.8,
        req.seed,
        !list,
        |done| on_progress(done, total),
    )?;
    let held = replies.split_off(targets.len().min(replies.len()));
    Ok((replies, held))
}

/// Token budget of a reply to an input request for `n` inputs.
fn input_tokens(n: usize) -> u32 {
    (64 * n.max(1)).min(1024) as u32
}

/// Request targets: `n` rounds over the labels of a label set (each label once per round), or
/// `n` open requests.
fn request_targets(labels: Option<&[String]>, n: usize) -> Vec<Option<&str>> {
    match labels {
        Some(labels) => (0..n)
            .flat_map(|_| labels.iter().map(|l| Some(l.as_str())))
            .collect(),
        None => vec![None; n],
    }
}

/// The replies' inputs that pass the checks (not empty, not too long, not seen, not the label
/// itself), as examples of their target label. Each reply holds up to `per_request` inputs.
fn screen_inputs(
    targets: &[Option<&str>],
    replies: &[String],
    per_request: usize,
    seen: &mut Vec<String>,
    rejected: &mut Vec<(String, String)>,
) -> Vec<Example> {
    let mut synth: Vec<Example> = Vec::new();
    let inputs = targets.iter().zip(replies).flat_map(|(label, reply)| {
        let inputs = reply_inputs(reply, per_request);
        if inputs.len() < per_request {
            tracing::debug!(
                got = inputs.len(),
                asked = per_request,
                reply,
                "a reply gave fewer inputs than asked"
            );
        }
        inputs.into_iter().map(move |i| (label, i))
    });
    for (label, input) in inputs {
        let reason = if input.is_empty() {
            Some("empty input")
        } else if input.len() > 400 {
            Some("input too long")
        } else if seen.contains(&norm_key(&input)) {
            Some("duplicate input")
        } else if label.is_some_and(|l| input.eq_ignore_ascii_case(l)) {
            Some("input is the label itself")
        } else {
            None
        };
        if let Some(r) = reason {
            rejected.push((input, r.to_string()));
            continue;
        }
        seen.push(norm_key(&input));
        synth.push(Example {
            input,
            output: label.map(str::to_string).unwrap_or_default(),
            origin: match label {
                Some(_) => Origin::LabelConditioned,
                None => Origin::TeacherAnswered,
            },
        });
    }
    synth
}

/// Open outputs: the teacher's direct answer becomes the output (if it has the reference's
/// format). Label sets: see [`checked_label`]. The groups (training and held-out items) are
/// answered in one teacher call and come back filtered, group by group.
fn answer_or_agree<const N: usize>(
    teacher: &ChatModel,
    req: &SynthRequest<'_>,
    groups: [Vec<Example>; N],
    rejected: &mut Vec<(String, String)>,
    prior: &mut Option<Vec<f32>>,
) -> Result<[Vec<Example>; N]> {
    let inputs: Vec<&str> = groups.iter().flatten().map(|e| e.input.as_str()).collect();
    if inputs.is_empty() {
        return Ok(groups);
    }
    let answers = direct_answers(
        teacher,
        req.spec,
        req.reference,
        req.labels,
        &inputs,
        req.labelling,
        prior,
    )?;
    let mut answers = answers.into_iter();
    Ok(groups.map(|group| {
        let answered: Vec<(Example, String)> = group.into_iter().zip(&mut answers).collect();
        checked_answers(req, answered, rejected)
    }))
}

/// The items whose direct answer passes the checks, each with the output it gives.
fn checked_answers(
    req: &SynthRequest<'_>,
    answered: Vec<(Example, String)>,
    rejected: &mut Vec<(String, String)>,
) -> Vec<Example> {
    let mut kept = Vec::new();
    for (mut e, answer) in answered {
        match req.labels {
            None => {
                let out = answer_output(&answer, req.reference);
                if let Some(r) = format_problem(&out, req.reference) {
                    rejected.push((e.input, r.to_string()));
                    continue;
                }
                e.output = out;
            }
            Some(l) => match checked_label(l, &e.output, &answer, req.relabel) {
                Ok(label) => e.output = label,
                Err(reason) => {
                    rejected.push((e.input, reason.to_string()));
                    continue;
                }
            },
        }
        kept.push(e);
    }
    kept
}

/// The label a label-conditioned item keeps, given the teacher's direct `answer`: with
/// `relabel`, the label the teacher answered (an answer outside the set drops the item);
/// without, the label it was written for, if the teacher agrees.
fn checked_label(
    labels: &[String],
    conditioned: &str,
    answer: &str,
    relabel: bool,
) -> std::result::Result<String, &'static str> {
    match canonical_label(labels, answer) {
        Some(answered) if relabel => Ok(answered.to_string()),
        None if relabel => Err("teacher answers outside the label set"),
        Some(answered) if answered == conditioned => Ok(answered.to_string()),
        _ => Err("teacher disagrees"),
    }
}

/// The labels that some items were written for but that fewer than `min` relabelled items
/// carry (fewer than were written, if that is less): relabelling would starve them. `min` 1
/// finds the labels the teacher never answered.
fn labels_rarely_answered(
    labels: &[String],
    conditioned: &[Example],
    relabelled: &[Example],
    min: usize,
) -> Vec<String> {
    let count = |items: &[Example], label: &str| items.iter().filter(|e| e.output == label).count();
    labels
        .iter()
        .filter(|l| {
            let written = count(conditioned, l);
            written > 0 && count(relabelled, l) < min.min(written)
        })
        .cloned()
        .collect()
}

/// One extra round of input requests after the first (a top-up or a round for starved
/// labels), `more` as (label, index of the request for that label): the screened inputs, as
/// examples of the label they were written for. Round `number` picks the kinds, styles and
/// sampling seed, so that no two rounds send the same prompts.
#[allow(clippy::too_many_arguments)]
fn request_round(
    teacher: &ChatModel,
    req: &SynthRequest<'_>,
    kinds: &[Vec<String>],
    more: &[(Option<&str>, usize)],
    number: usize,
    asked: &mut usize,
    seen: &mut Vec<String>,
    rejected: &mut Vec<(String, String)>,
    on_progress: &mut impl FnMut(usize, usize),
) -> Result<Vec<Example>> {
    let offset = req.requests * number;
    let tails: Vec<String> = more
        .iter()
        .enumerate()
        .map(|(n, (label, k))| {
            let kind = req
                .labels
                .and_then(|l| l.iter().position(|x| Some(x.as_str()) == *label))
                .and_then(|g| kinds.get(g))
                .filter(|g| !g.is_empty())
                .map(|g| g[(k + offset) % g.len()].as_str());
            input_prompt_tail(*label, kind, offset + n, req.inputs_per_request)
        })
        .collect();
    let seed = req.seed ^ (number as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let (base, total) = (*asked, *asked + tails.len());
    let replies = teacher.ask(
        &input_prompt_shared(req),
        &tails,
        input_tokens(req.inputs_per_request),
        0.8,
        seed,
        req.inputs_per_request <= 1,
        |done| on_progress(base + done, total),
    )?;
    *asked = total;
    let targets: Vec<Option<&str>> = more.iter().map(|(l, _)| *l).collect();
    Ok(screen_inputs(
        &targets,
        &replies,
        req.inputs_per_request,
        seen,
        rejected,
    ))
}

/// The requests of one round asking again for `starved` labels (those
/// [`labels_rarely_answered`] finds), as (label, index of the request for that label),
/// interleaved over the labels. Each label gets enough inputs to reach the count at which
/// balancing cuts no other label (the largest label's count over [`RELABEL_BALANCE_RATIO`], at
/// least the floor), at the rate the teacher's answers have kept it so far, at most twice the
/// first round's requests per label. A label the teacher never gave is not asked for: at a
/// rate of 0 no number of requests reaches the floor.
fn starved_label_requests<'a>(
    labels: &'a [String],
    starved: &[String],
    conditioned: &[Example],
    answered: &[Example],
    req: &SynthRequest<'_>,
) -> Vec<(Option<&'a str>, usize)> {
    let count = |items: &[Example], label: &str| items.iter().filter(|e| e.output == label).count();
    let largest = labels.iter().map(|l| count(answered, l)).max().unwrap_or(0);
    let goal = (largest / RELABEL_BALANCE_RATIO).max(req.relabel_min_per_label);
    let per_request = req.inputs_per_request.max(1);
    let wanted: Vec<usize> = labels
        .iter()
        .map(|l| {
            let have = count(answered, l);
            if !starved.contains(l) || have == 0 {
                return 0;
            }
            let written = count(conditioned, l).max(have);
            let inputs = goal.saturating_sub(have).max(1) * written / have;
            inputs
                .div_ceil(per_request)
                .clamp(1, 2 * req.requests.max(1))
        })
        .collect();
    interleaved(labels, &wanted)
}

/// `wanted[i]` requests for label `i`, as (label, index of the request for that label),
/// interleaved over the labels so that every batch mixes them.
fn interleaved<'a>(labels: &'a [String], wanted: &[usize]) -> Vec<(Option<&'a str>, usize)> {
    let rounds = wanted.iter().copied().max().unwrap_or(0);
    (0..rounds)
        .flat_map(|k| {
            labels
                .iter()
                .zip(wanted)
                .filter(move |(_, &w)| k < w)
                .map(move |(l, _)| (Some(l.as_str()), k))
        })
        .collect()
}

/// Extra rounds of input requests a compile makes when the first round leaves fewer training
/// items than [`SynthRequest::train_items`].
const TOP_UP_ROUNDS: usize = 2;

/// The next top-up round's requests, as (label, index of the request for that label), or
/// `None` when the data is large enough (or no target is set). A label set asks for each label
/// the items it lacks to reach its share of the target, counted after balancing (a rare label
/// caps every other one), half again over for the items the checks will drop.
fn top_up_targets<'a>(
    req: &SynthRequest<'a>,
    ratio: usize,
    synth: &[Example],
) -> Option<Vec<(Option<&'a str>, usize)>> {
    let goal = req.train_items;
    let mut balanced = synth.to_vec();
    if let Some(labels) = req.labels {
        balance_labels(labels, ratio, &mut balanced);
    }
    if goal == 0 || balanced.len() >= goal {
        return None;
    }
    let with_margin = |missing: usize| missing + missing.div_ceil(2);
    let more: Vec<(Option<&str>, usize)> = match req.labels {
        None => (0..with_margin(goal - balanced.len()))
            .map(|k| (None, k))
            .collect(),
        Some(labels) => {
            let share = goal.div_ceil(labels.len().max(1));
            let wanted: Vec<usize> = labels
                .iter()
                .map(|l| {
                    let have = synth.iter().filter(|e| &e.output == l).count();
                    with_margin(share.saturating_sub(have))
                })
                .collect();
            interleaved(labels, &wanted)
        }
    };
    (!more.is_empty()).then_some(more)
}

/// With `relabel`, the most items a label keeps, as a multiple of the rarest label's count.
/// Relabelled data follows the teacher's skew (log-level: ERROR 11, WARN 4, INFO 13, DEBUG 4):
/// cutting every label to the rarest left 12 and 5 training items on log-level and
/// ticket-routing (eighth session), while no cap at all teaches the majority label.
const RELABEL_BALANCE_RATIO: usize = 2;

/// Balances the label set: at most `ratio` times as many of each label as of the rarest one
/// present.
fn balance_labels(labels: &[String], ratio: usize, synth: &mut Vec<Example>) {
    let counts: Vec<usize> = labels
        .iter()
        .map(|l| synth.iter().filter(|e| &e.output == l).count())
        .collect();
    let missing: Vec<&String> = labels
        .iter()
        .zip(&counts)
        .filter(|(_, &c)| c == 0)
        .map(|(l, _)| l)
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            ?missing,
            "no synthesised training item survived for these labels"
        );
    }
    if let Some(rarest) = counts.iter().copied().filter(|&c| c > 0).min() {
        let cap = rarest * ratio;
        let mut taken = vec![0usize; labels.len()];
        synth.retain(|e| {
            let Some(i) = labels.iter().position(|l| l == &e.output) else {
                return false;
            };
            taken[i] += 1;
            taken[i] <= cap
        });
    }
}

/// Splits synthesised items into (train, held out): every 4th item, of each label when the
/// spec names a label set (stratified), else of all (open outputs are nearly all distinct, so
/// stratifying by output would hold out nothing). User examples never come here: they are
/// scarce and trusted, so they always train.
fn hold_out(synth: Vec<Example>, by_label: bool) -> (Vec<Example>, Vec<Example>) {
    let mut seen: Vec<(String, usize)> = Vec::new();
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for e in synth {
        let stratum = if by_label { e.output.as_str() } else { "" };
        let n = match seen.iter_mut().find(|(s, _)| s == stratum) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                seen.push((stratum.to_string(), 1));
                1
            }
        };
        if n % 4 == 0 {
            held.push(e);
        } else {
            train.push(e);
        }
    }
    (train, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(outputs: &[&str]) -> Vec<Example> {
        outputs
            .iter()
            .enumerate()
            .map(|(i, o)| Example {
                input: format!("input {i}"),
                output: o.to_string(),
                origin: Origin::TeacherAnswered,
            })
            .collect()
    }

    #[test]
    fn holds_out_every_fourth_item_per_label_or_overall() {
        let labelled = items(&["a", "b", "a", "a", "b", "a", "b", "b"]);
        let (train, held) = hold_out(labelled, true);
        let held: Vec<&str> = held.iter().map(|e| e.output.as_str()).collect();
        assert_eq!((train.len(), held), (6, vec!["a", "b"]));
        // Open outputs are all distinct: every 4th item overall.
        let open = items(&["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
        let (train, held) = hold_out(open, false);
        let held: Vec<&str> = held.iter().map(|e| e.output.as_str()).collect();
        assert_eq!((train.len(), held), (7, vec!["4", "8"]));
    }

    #[test]
    fn request_targets_are_rounds_over_the_labels() {
        let labels = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let t = request_targets(Some(&labels), 3);
        assert_eq!(t.len(), 9, "3 rounds of 3 labels");
        assert_eq!(t[..3], [Some("a"), Some("b"), Some("c")]);
        assert_eq!(request_targets(None, 5), vec![None; 5]);
        assert!(request_targets(Some(&labels), 0).is_empty());
    }

    #[test]
    fn held_out_requests_ask_for_hard_cases_of_the_label() {
        let p = held_out_prompt_tail(Some("ALERT"), 2);
        assert!(p.contains("exactly: ALERT"), "{p}");
        assert!(p.contains("careless program would get wrong"), "{p}");
        assert!(p.contains(HELD_OUT_STYLES[2]), "{p}");
        assert!(!held_out_prompt_tail(None, 0).contains("exactly"));
    }

    #[test]
    fn a_label_written_for_but_rarely_answered_is_found() {
        let labels: Vec<String> = ["ALERT", "QUIET", "OTHER"].map(String::from).to_vec();
        let item = |output: &str| Example {
            input: "x".into(),
            output: output.into(),
            origin: Origin::LabelConditioned,
        };
        let items = |counts: [(&str, usize); 2]| -> Vec<Example> {
            counts
                .iter()
                .flat_map(|&(l, n)| (0..n).map(move |_| item(l)))
                .collect()
        };
        let conditioned = items([("ALERT", 5), ("QUIET", 5)]);
        // The teacher answered ALERT for everything: QUIET was written for and never answered;
        // OTHER was never written for, so it is not the teacher's doing.
        let never = items([("ALERT", 10), ("QUIET", 0)]);
        let rarely = items([("ALERT", 8), ("QUIET", 2)]);
        let quiet = vec!["QUIET".to_string()];
        assert_eq!(
            labels_rarely_answered(&labels, &conditioned, &never, 1),
            quiet
        );
        assert!(labels_rarely_answered(&labels, &conditioned, &rarely, 1).is_empty());
        assert_eq!(
            labels_rarely_answered(&labels, &conditioned, &rarely, 3),
            quiet
        );
        assert!(labels_rarely_answered(&labels, &conditioned, &conditioned, 5).is_empty());
        // A label written for fewer times than `min` needs only as many answers as were written.
        let few = items([("ALERT", 5), ("QUIET", 2)]);
        assert!(labels_rarely_answered(&labels, &few, &few, 4).is_empty());
        assert_eq!(
            labels_rarely_answered(&labels, &few, &items([("ALERT", 6), ("QUIET", 1)]), 4),
            quiet
        );
    }

    #[test]
    fn balancing_caps_each_label_at_a_multiple_of_the_rarest() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let items = |counts: [usize; 3]| -> Vec<Example> {
            labels
                .iter()
                .zip(counts)
                .flat_map(|(l, n)| {
                    (0..n).map(move |i| Example {
                        input: format!("{l}{i}"),
                        output: l.clone(),
                        origin: Origin::LabelConditioned,
                    })
                })
                .collect()
        };
        let count = |v: &[Example], l: &str| v.iter().filter(|e| e.output == l).count();
        for (ratio, want) in [(1, [2, 2, 2]), (2, [4, 2, 4])] {
            let mut v = items([7, 2, 4]);
            balance_labels(&labels, ratio, &mut v);
            assert_eq!([count(&v, "a"), count(&v, "b"), count(&v, "c")], want);
        }
        // A label with no item does not make the cap zero.
        let mut v = items([3, 0, 1]);
        balance_labels(&labels, 2, &mut v);
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn top_up_asks_for_the_missing_share_of_each_label_with_a_margin() {
        let labels: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let item = |l: &str, i: usize| Example {
            input: format!("{l}{i}"),
            output: l.to_string(),
            origin: Origin::LabelConditioned,
        };
        let req = |train_items, labels: Option<&'static [String]>| SynthRequest {
            spec: "s",
            user_examples: &[],
            reference: &[],
            labels,
            requests: 8,
            agreement_filter: false,
            relabel: true,
            labelling: Labelling::Answer,
            relabel_min_per_label: 1,
            starved_label_rounds: 0,
            kinds: 0,
            held_out: 0,
            train_items,
            inputs_per_request: 1,
            seed: 0,
        };
        let labels: &'static [String] = Vec::leak(labels);
        // 10 a, 2 b: balanced (ratio 2) that is 4 + 2 = 6 < 16; share 8 each.
        let synth: Vec<Example> = (0..10)
            .map(|i| item("a", i))
            .chain((0..2).map(|i| item("b", i)))
            .collect();
        let more = top_up_targets(&req(16, Some(labels)), 2, &synth).expect("short");
        let count = |l: &str| more.iter().filter(|(x, _)| *x == Some(l)).count();
        assert_eq!(
            (count("a"), count("b")),
            (0, 9),
            "b lacks 6, plus half again"
        );
        assert_eq!(more[0], (Some("b"), 0));
        // Enough after balancing, or no target: no more requests.
        assert!(top_up_targets(&req(6, Some(labels)), 2, &synth).is_none());
        assert!(top_up_targets(&req(0, Some(labels)), 2, &synth).is_none());
        // Open outputs: the missing count, half again over.
        let open: Vec<Example> = (0..10).map(|i| item("", i)).collect();
        let more = top_up_targets(&req(14, None), 1, &open).expect("short");
        assert_eq!(more.len(), 6);
        assert!(more.iter().all(|(l, _)| l.is_none()));
    }

    #[test]
    fn starved_labels_are_asked_for_at_the_rate_the_teacher_keeps_them() {
        let labels: &'static [String] = Vec::leak(["pos", "neg", "neu"].map(String::from).to_vec());
        let req = SynthRequest {
            spec: "s",
            user_examples: &[],
            reference: &[],
            labels: Some(labels),
            requests: 9,
            agreement_filter: false,
            relabel: true,
            labelling: Labelling::Calibrated,
            relabel_min_per_label: 4,
            starved_label_rounds: 2,
            kinds: 0,
            held_out: 0,
            train_items: 0,
            inputs_per_request: 1,
            seed: 0,
        };
        // Written for: 9 of each. Answered: pos 14, neg 10, neu 3 (3 of the 9 written for neu).
        let conditioned = items(&[["pos"; 9], ["neg"; 9], ["neu"; 9]].concat());
        let answered = items(&[vec!["pos"; 14], vec!["neg"; 10], vec!["neu"; 3]].concat());
        let starved = labels_rarely_answered(labels, &conditioned, &answered, 4);
        assert_eq!(starved, ["neu"]);
        let more = starved_label_requests(labels, &starved, &conditioned, &answered, &req);
        // Goal: 14 / 2 = 7 neu, so that balancing cuts no other label; 4 missing at 3 kept per
        // 9 written: 12 requests, within the cap of twice the first round's 9.
        assert_eq!(more.len(), 12);
        assert!(more.iter().all(|(l, _)| *l == Some("neu")));
        assert_eq!(more[11], (Some("neu"), 11));
        // The cap: 1 of 9 kept would need 54 requests.
        let one = items(&[vec!["pos"; 14], vec!["neg"; 10], vec!["neu"; 1]].concat());
        let more = starved_label_requests(labels, &starved, &conditioned, &one, &req);
        assert_eq!(more.len(), 18);
        // A label never given is not asked for again; lists ask for fewer requests.
        let none = items(&[vec!["pos"; 14], vec!["neg"; 10]].concat());
        assert!(starved_label_requests(labels, &starved, &conditioned, &none, &req).is_empty());
        let lists = SynthRequest {
            inputs_per_request: 4,
            ..req
        };
        let more = starved_label_requests(labels, &starved, &conditioned, &answered, &lists);
        assert_eq!(more.len(), 3);
    }

    #[test]
    fn relabelling_takes_the_teachers_answer_and_the_filter_drops_disagreement() {
        let labels = vec!["ALERT".to_string(), "QUIET".to_string()];
        assert_eq!(
            checked_label(&labels, "ALERT", "quiet", true),
            Ok("QUIET".into())
        );
        assert_eq!(
            checked_label(&labels, "ALERT", "QUIET", false),
            Err("teacher disagrees")
        );
        assert_eq!(
            checked_label(&labels, "ALERT", "ALERT", false),
            Ok("ALERT".into())
        );
        assert!(checked_label(&labels, "ALERT", "maybe", true).is_err());
    }

    #[test]
    fn calibrated_choice_divides_out_the_prior() {
        // Uncalibrated, label 0 wins; but the teacher gives label 0 0.8 on empty inputs.
        assert_eq!(calibrated_choice(&[0.6, 0.4], &[0.8, 0.2]), 1);
        assert_eq!(calibrated_choice(&[0.6, 0.4], &[0.5, 0.5]), 0);
        // A zero prior counts as a tiny one, not a division by zero; ties keep the first.
        assert_eq!(calibrated_choice(&[0.0, 0.1], &[0.5, 0.0]), 1);
        assert_eq!(calibrated_choice(&[0.5, 0.5], &[0.5, 0.5]), 0);
    }

    #[test]
    fn first_line_strips_wrappers() {
        assert_eq!(first_line("```\nInput: \"disk full\"\n```"), "disk full");
        assert_eq!(first_line("\n  ALERT  \nbecause"), "ALERT");
    }

    #[test]
    fn list_replies_give_one_input_per_item() {
        let reply = "Here you go:\n1. \"Server down again\"\n2) refund please\n\n3. `hi`\n4. extra";
        assert_eq!(
            reply_inputs(reply, 3),
            ["Server down again", "refund please", "hi"]
        );
        assert_eq!(reply_inputs("Input: one line\n2. more", 1), ["one line"]);
        assert!(reply_inputs("no list at all", 4).is_empty());
        let tail = input_prompt_tail(Some("billing"), Some("a refund"), 0, 4);
        assert!(tail.contains("Write 4 new, realistic inputs"), "{tail}");
        assert!(tail.contains("numbered list, 1 to 4"), "{tail}");
        // Each item of a list request gets its own style, rotating over requests.
        assert!(tail.contains("- input 1: Make it short."), "{tail}");
        assert!(
            tail.contains("- input 4: Make it a borderline case"),
            "{tail}"
        );
        let next = input_prompt_tail(Some("billing"), None, 1, 4);
        assert!(
            next.contains("- input 1: Make it longer and detailed."),
            "{next}"
        );
        let single = input_prompt_tail(None, None, 0, 1);
        assert!(single.contains("Write one new, realistic input for this task."));
    }

    #[test]
    fn parses_numbered_kinds() {
        let reply = "Here are kinds:\n1. An out-of-memory error.\n2) **A traceback line**\n\
                     - a NaN loss\n3. an out-of-memory error\nThanks!";
        assert_eq!(
            parse_kinds(reply, 8),
            vec!["An out-of-memory error", "A traceback line", "a NaN loss"]
        );
        assert_eq!(parse_kinds(reply, 2).len(), 2);
        assert!(parse_kinds("no list here", 8).is_empty());
    }

    #[test]
    fn json_answers_are_extracted_whole_and_compacted() {
        let r = vec![("a".to_string(), "{\"a\":1}".to_string())];
        let pretty = "```json\n{\n  \"title\": \"Lunch  with Sam\",\n  \"b\": [1, 2]\n}\n```";
        assert_eq!(
            answer_output(pretty, &r),
            "{\"title\":\"Lunch  with Sam\",\"b\":[1,2]}"
        );
        // Escaped quotes inside strings do not end them; prose before the value is skipped.
        let escaped = "Here it is: [\"a \\\" b\", {\"k\" : null}] done";
        assert_eq!(answer_output(escaped, &r), "[\"a \\\" b\",{\"k\":null}]");
        // A brace in prose that does not start valid JSON is passed over.
        assert_eq!(answer_output("{oops} then {\"x\": 2}", &r), "{\"x\":2}");
        // No JSON value: the first line, which the format check then rejects.
        assert_eq!(answer_output("{\n  \"a\": ", &r), "{");
        // Outputs that are not JSON: the first line, as before.
        let labels = vec![("x".to_string(), "ALERT".to_string())];
        assert_eq!(answer_output("ALERT\n{\"a\":1}", &labels), "ALERT");
    }

    #[test]
    fn json_format_check() {
        let r = vec![("a".to_string(), "{\"a\":1}".to_string())];
        assert_eq!(format_problem("{\"a\":1}", &r), None);
        assert!(format_problem("{a:1}", &r).is_some());
        assert!(format_problem("", &[]).is_some());
    }
}
