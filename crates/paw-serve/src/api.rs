//! The HTTP endpoints (`spec/serve.md`): requests in, JSON out, errors as
//! `{"error": {"code", "type", "message"}}` with a stable `code`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State as AxumState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use paw_rt::{Output, StopReason};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::batcher::{Job, JobError};
use crate::registry::Served;
use crate::State;

pub(crate) fn router(state: Arc<State>) -> Router {
    let limit = state.options.max_body_bytes;
    Router::new()
        .route("/v1/functions/{name}", post(function))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error answer: HTTP status, stable code, message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // `type` repeats the code for OpenAI clients, which read `error.type` and `message`.
        let body =
            json!({"error": {"code": self.code, "type": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The body as JSON of type `T`: 413 above the size limit, 400 for anything malformed.
fn parse_body<T: for<'de> Deserialize<'de>>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                rejection.body_text(),
            )
        } else {
            ApiError::invalid(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let code = if e.is_data() {
            "invalid_request"
        } else {
            "invalid_json"
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    })
}

/// Inputs run for one request, with how they were run.
struct Ran {
    /// The request's number (also in its tracing span).
    request: u64,
    served: Served,
    outputs: Vec<Output>,
    queued: Duration,
    batch_inputs: usize,
}

/// Queues `inputs` for the function `reference` and waits for the outputs.
async fn run(
    state: &State,
    reference: &str,
    inputs: Vec<String>,
    max_tokens: Option<u32>,
) -> Result<Ran, ApiError> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ));
    }
    let registry = state.registry();
    let served = registry.get(reference).cloned().ok_or_else(|| {
        let known: Vec<&str> = registry.iter().map(|s| s.name.as_str()).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_function",
            format!(
                "no function `{reference}`; served: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        )
    })?;
    let limit = state.options.max_inputs_per_request;
    if inputs.is_empty() {
        return Err(ApiError::invalid("no input given"));
    }
    if inputs.len() > limit {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_inputs",
            format!("{} inputs; at most {limit} per request", inputs.len()),
        ));
    }
    if max_tokens == Some(0) {
        return Err(ApiError::invalid("max_tokens must be at least 1"));
    }
    // The byte bound is checked here, before queueing; the exact token count in the worker.
    let max_bytes = served.function.max_input_bytes();
    if let Some((i, input)) = inputs.iter().enumerate().find(|(_, s)| s.len() > max_bytes) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "input_too_long",
            format!(
                "input {i} is {} bytes; the program's context window holds at most {max_bytes}",
                input.len()
            ),
        ));
    }
    let request = state.next_request.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        "request",
        id = request,
        function = %served.name,
        program = %served.program
    );
    let (reply, answer) = oneshot::channel();
    let job = Job {
        served: served.clone(),
        inputs,
        max_tokens,
        enqueued: Instant::now(),
        reply,
    };
    // Counted before sending, so the worker never takes a job the gauge has not counted.
    state.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
    let sent = match state.queue.lock() {
        Ok(queue) => match queue.as_ref() {
            Some(q) => q.try_send(job),
            None => Err(TrySendError::Closed(job)),
        },
        Err(_) => Err(TrySendError::Closed(job)),
    };
    if let Err(e) = sent {
        state.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        return Err(match e {
            TrySendError::Full(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!(
                    "{} requests are waiting; retry later",
                    state.options.queue_capacity
                ),
            ),
            TrySendError::Closed(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ),
        });
    }
    let timeout = state.options.request_timeout;
    async move {
        let result = match tokio::time::timeout(timeout, answer).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    format!("no answer within {} ms", timeout.as_millis()),
                ))
            }
            Ok(Err(_)) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the model worker stopped",
                ))
            }
            Ok(Ok(result)) => result,
        };
        let outputs = result.outputs.map_err(|e| match e {
            JobError::Runtime(
                e @ (paw_rt::Error::InputTooLong { .. } | paw_rt::Error::ContextOverflow { .. }),
            ) => ApiError::new(StatusCode::BAD_REQUEST, "input_too_long", e.to_string()),
            e => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "runtime_error",
                e.to_string(),
            ),
        })?;
        let (prefill, decode) = outputs.iter().fold((0.0, 0.0), |(p, d), o| {
            (
                p + o.timings.prefill.as_secs_f64(),
                d + o.timings.decode.as_secs_f64(),
            )
        });
        tracing::info!(
            inputs = outputs.len(),
            queue_ms = result.queued.as_millis() as u64,
            prefill_ms = (prefill * 1e3) as u64,
            decode_ms = (decode * 1e3) as u64,
            batch_inputs = result.batch_inputs,
            "answered"
        );
        Ok(Ran {
            request,
            served,
            outputs,
            queued: result.queued,
            batch_inputs: result.batch_inputs,
        })
    }
    .instrument(span)
    .await
}

/// Records the request's status and latency.
fn finish(state: &State, endpoint: &'static str, started: Instant, response: Response) -> Response {
    state.metrics.request(
        endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn stop_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndOfGeneration => "end_of_generation",
        StopReason::StopString => "stop_string",
        StopReason::MaxTokens => "max_tokens",
        StopReason::Contract => "contract",
    }
}

fn output_json(o: &Output) -> Value {
    json!({
        "text": o.text,
        "stop_reason": stop_reason(o.stop_reason),
        "contract": o.contract.as_str(),
        "tokens": {
            "prefix": o.prefix_tokens,
            "input": o.input_tokens,
            "suffix": o.suffix_tokens,
            "generated": o.generated_tokens,
        },
        "timings_ms": {
            "prefill": o.timings.prefill.as_secs_f64() * 1e3,
            "decode": o.timings.decode.as_secs_f64() * 1e3,
        },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionRequest {
    input: Option<String>,
    inputs: Option<Vec<String>>,
    max_tokens: Option<u32>,
}

async fn function(
    AxumState(state): AxumState<Arc<State>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let answer = async {
        let req: FunctionRequest = parse_body(body)?;
        let (inputs, single) = match (req.input, req.inputs) {
            (Some(input), None) => (vec![input], true),
            (None, Some(inputs)) => (inputs, false),
            _ => {
                return Err(ApiError::invalid(
                    "give exactly one of `input` and `inputs`",
                ))
            }
        };
        let ran = run(&state, &name, inputs, req.max_tokens).await?;
        let mut body = json!({
            "function": ran.served.name,
            "program": ran.served.program.to_string(),
            "queue_ms": ran.queued.as_secs_f64() * 1e3,
            "batch_inputs": ran.batch_inputs,
        });
        let outputs: Vec<Value> = ran.outputs.iter().map(output_json).collect();
        if single {
            body["output"] = outputs.into_iter().next().unwrap_or(Value::Null);
        } else {
            body["outputs"] = Value::Array(outputs);
        }
        Ok::<_, ApiError>(Json(body))
    }
    .await;
    finish(&state, "function", started, answer.into_response())
}

/// A prompt: one string or several (OpenAI's completions accept both).
#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
}

/// What paw reads of an OpenAI completions request; other fields (temperature, top_p, user,
/// ...) are accepted and ignored: a program decodes with its own generation settings.
#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: Prompt,
    max_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    n: Option<u32>,
}

fn check_openai(stream: bool, n: Option<u32>) -> Result<(), ApiError> {
    if stream {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported",
            "streaming is not supported: send `stream: false`",
        ));
    }
    if n.is_some_and(|n| n != 1) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported",
            "a program gives one answer per input: `n` must be 1",
        ));
    }
    Ok(())
}

fn finish_reason(o: &Output) -> &'static str {
    match o.stop_reason {
        StopReason::MaxTokens => "length",
        _ => "stop",
    }
}

fn usage(outputs: &[Output]) -> Value {
    let prompt: usize = outputs
        .iter()
        .map(|o| o.prefix_tokens + o.input_tokens + o.suffix_tokens)
        .sum();
    let completion: usize = outputs.iter().map(|o| o.generated_tokens).sum();
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// The OpenAI answer envelope around `choices` (`object`: `text_completion` or
/// `chat.completion`).
fn openai_answer(
    object: &str,
    id_prefix: &str,
    model: &str,
    ran: &Ran,
    choices: Vec<Value>,
) -> Value {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "id": format!("{id_prefix}-{}", ran.request),
        "object": object,
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage(&ran.outputs),
    })
}

async fn completions(
    AxumState(state): AxumState<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let answer = async {
        let req: CompletionRequest = parse_body(body)?;
        check_openai(req.stream, req.n)?;
        let inputs = match req.prompt {
            Prompt::One(p) => vec![p],
            Prompt::Many(p) => p,
        };
        let ran = run(&state, &req.model, inputs, req.max_tokens).await?;
        let choices: Vec<Value> = ran
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                json!({"index": i, "text": o.text, "logprobs": null, "finish_reason": finish_reason(o)})
            })
            .collect();
        Ok::<_, ApiError>(Json(openai_answer(
            "text_completion",
            "cmpl",
            &req.model,
            &ran,
            choices,
        )))
    }
    .await;
    finish(&state, "completions", started, answer.into_response())
}

/// A chat message's content: a string, or parts of which the text ones are joined.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Option<Content>,
}

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    n: Option<u32>,
}

async fn chat_completions(
    AxumState(state): AxumState<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let answer = async {
        let req: ChatRequest = parse_body(body)?;
        check_openai(req.stream, req.n)?;
        // The program is the instruction; the input is the last user message.
        let content = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .and_then(|m| m.content.as_ref())
            .ok_or_else(|| ApiError::invalid("no user message with content"))?;
        let input = match content {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let max_tokens = req.max_completion_tokens.or(req.max_tokens);
        let ran = run(&state, &req.model, vec![input], max_tokens).await?;
        let choices: Vec<Value> = ran
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                json!({
                    "index": i,
                    "message": {"role": "assistant", "content": o.text},
                    "logprobs": null,
                    "finish_reason": finish_reason(o),
                })
            })
            .collect();
        Ok::<_, ApiError>(Json(openai_answer(
            "chat.completion",
            "chatcmpl",
            &req.model,
            &ran,
            choices,
        )))
    }
    .await;
    finish(&state, "chat_completions", started, answer.into_response())
}

async fn models(AxumState(state): AxumState<Arc<State>>) -> Response {
    let started = Instant::now();
    let registry = state.registry();
    let data: Vec<Value> = registry
        .iter()
        .map(|s| {
            json!({
                "id": s.name,
                "object": "model",
                "created": 0,
                "owned_by": "paw",
                "program": s.program.to_string(),
                "interpreter": s.function.interpreter_identity().name,
            })
        })
        .collect();
    let response = Json(json!({"object": "list", "data": data})).into_response();
    finish(&state, "models", started, response)
}

async fn health(AxumState(state): AxumState<Arc<State>>) -> Response {
    let status = if state.shutting_down.load(Ordering::SeqCst) {
        "shutting_down"
    } else {
        "ok"
    };
    Json(json!({
        "status": status,
        "functions": state.registry().len(),
        "queue_depth": state.metrics.queue_depth.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn metrics(AxumState(state): AxumState<Arc<State>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see spec/serve.md",
    )
}
