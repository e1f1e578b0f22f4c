//! `paw serve` over loopback on a tiny random-weight model (issue 18): every endpoint's answer
//! equals a direct call, errors have their codes, the queue and the timeout answer 429 and 504,
//! a reload swaps the functions, and a shutdown finishes the requests in flight.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use paw_rt::{CallOptions, Function, Interpreter};
use paw_serve::{Registry, ServeOptions, Server, ServerHandle};
use paw_testkit::tiny_model::{write_tiny_gguf, Arch};
use serde_json::{json, Value};

struct Running {
    base: String,
    handle: ServerHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    fn start(registry: Registry, options: ServeOptions) -> Self {
        let server = Server::start(registry, options).unwrap();
        let handle = server.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?).unwrap();
                server
                    .serve(listener, async move {
                        let _ = stopped.await;
                    })
                    .await
            })
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Self {
            base: format!("http://{addr}"),
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Shuts down gracefully and waits for the server to end.
    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.shutdown();
        }
    }
}

/// Status, `Retry-After` and JSON body of a request (bodies that are not JSON become a string).
fn send(method: &str, url: &str, body: Option<&str>) -> (u16, Option<String>, Value) {
    let req = ureq::request(method, url).timeout(Duration::from_secs(120));
    let result = match body {
        Some(b) => req.set("content-type", "application/json").send_string(b),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let retry = response.header("retry-after").map(str::to_owned);
    let text = response.into_string().unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry, value)
}

fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, v) = send("POST", &format!("{base}{path}"), Some(&body.to_string()));
    (status, v)
}

const INPUT: &str = paw_format::INPUT_PLACEHOLDER;

/// A tiny model and two programs on it (`alpha`, `beta`: different prompts, so different ids).
fn fixture(dir: &Path) -> (Registry, Function, Function) {
    let model = dir.join("tiny.gguf");
    write_tiny_gguf(Arch::Qwen2, &model);
    let interpreter = Interpreter::load(&model).unwrap();
    let mut registry = Registry::new();
    let mut bound = Vec::new();
    for (name, template) in [
        (
            "alpha",
            format!("<|im_start|>user\nA: {INPUT}<|im_end|>\n<|im_start|>assistant\n"),
        ),
        (
            "beta",
            format!("<|im_start|>user\nB: {INPUT}<|im_end|>\n<|im_start|>assistant\n"),
        ),
    ] {
        let program = paw_testkit::program(interpreter.identity(), &template, None);
        let id = paw_format::ProgramId::of_bytes(&program.to_bytes().unwrap());
        let function = interpreter.bind(&program).unwrap();
        registry.insert(name, id, function.clone());
        bound.push(function);
    }
    let beta = bound.pop().unwrap();
    let alpha = bound.pop().unwrap();
    (registry, alpha, beta)
}

fn direct(f: &Function, input: &str) -> String {
    f.call(input, &CallOptions::default()).unwrap().text
}

#[test]
fn every_endpoint_answers_what_a_direct_call_gives() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, alpha, beta) = fixture(dir.path());
    let server = Running::start(registry, ServeOptions::default());
    let base = &server.base;

    let (status, v) = post(base, "/v1/functions/alpha", &json!({"input": "I love it"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["output"]["text"], direct(&alpha, "I love it"));
    assert_eq!(v["function"], "alpha");
    let program = v["program"].as_str().unwrap().to_owned();
    assert!(v["output"]["tokens"]["generated"].as_u64().unwrap() > 0);

    // By program id too; a batch gives each input's single-call answer.
    let inputs = [
        "good",
        "bad",
        "a much longer input about nothing in particular",
    ];
    let (status, v) = post(
        base,
        &format!("/v1/functions/{program}"),
        &json!({"inputs": inputs}),
    );
    assert_eq!(status, 200, "{v}");
    let texts: Vec<&str> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["text"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = inputs.iter().map(|i| direct(&alpha, i)).collect();
    assert_eq!(texts, expected);

    let (status, v) = post(
        base,
        "/v1/completions",
        &json!({"model": "beta", "prompt": "so-so", "temperature": 0.7, "user": "x"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], direct(&beta, "so-so"));
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    // Each answer carries its own request's id.
    let (_, again) = post(
        base,
        "/v1/completions",
        &json!({"model": "beta", "prompt": "so-so"}),
    );
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_ne!(v["id"], again["id"]);

    let (status, v) = post(
        base,
        "/v1/chat/completions",
        &json!({"model": "beta", "messages": [
            {"role": "system", "content": "ignored"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "great stuff"}]}
        ]}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        direct(&beta, "great stuff")
    );

    let (status, _, v) = send("GET", &format!("{base}/v1/models"), None);
    assert_eq!(status, 200);
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha", "beta"]);

    let (status, _, v) = send("GET", &format!("{base}/health"), None);
    assert_eq!((status, &v["status"]), (200, &json!("ok")));

    let (status, _, v) = send("GET", &format!("{base}/metrics"), None);
    assert_eq!(status, 200);
    let text = v.as_str().unwrap();
    assert!(
        text.contains("paw_requests_total{endpoint=\"function\",status=\"200\"} 2"),
        "{text}"
    );
    assert!(text.contains("paw_inputs_total 7"), "{text}");
    assert!(text.contains("paw_queue_depth 0"), "{text}");
}

#[test]
fn errors_carry_their_status_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, alpha, _) = fixture(dir.path());
    let options = ServeOptions {
        max_body_bytes: 64 << 10,
        max_inputs_per_request: 4,
        ..ServeOptions::default()
    };
    let server = Running::start(registry, options);
    let base = &server.base;
    let code =
        |(status, v): (u16, Value)| (status, v["error"]["code"].as_str().unwrap().to_owned());

    let unknown = code(post(base, "/v1/functions/gamma", &json!({"input": "x"})));
    assert_eq!(unknown, (404, "unknown_function".to_owned()));
    let unknown = code(post(
        base,
        "/v1/completions",
        &json!({"model": "gamma", "prompt": "x"}),
    ));
    assert_eq!(unknown, (404, "unknown_function".to_owned()));

    let (status, _, v) = send(
        "POST",
        &format!("{base}/v1/functions/alpha"),
        Some("{\"input\": "),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );

    let wrong = code(post(base, "/v1/functions/alpha", &json!({"input": 3})));
    assert_eq!(wrong, (400, "invalid_request".to_owned()));
    let both = code(post(
        base,
        "/v1/functions/alpha",
        &json!({"input": "a", "inputs": ["b"]}),
    ));
    assert_eq!(both, (400, "invalid_request".to_owned()));
    let many = code(post(
        base,
        "/v1/functions/alpha",
        &json!({"inputs": ["a", "b", "c", "d", "e"]}),
    ));
    assert_eq!(many, (400, "too_many_inputs".to_owned()));

    let huge = "x".repeat(100 << 10);
    let body = code(post(base, "/v1/functions/alpha", &json!({"input": huge})));
    assert_eq!(body, (413, "body_too_large".to_owned()));

    // Longer than the context window, though within the body limit.
    let long = "word ".repeat(alpha.max_input_bytes() / 5 + 10);
    assert!(long.len() < 64 << 10);
    let long = code(post(base, "/v1/functions/alpha", &json!({"input": long})));
    assert_eq!(long, (400, "input_too_long".to_owned()));

    let stream = code(post(
        base,
        "/v1/chat/completions",
        &json!({"model": "alpha", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    ));
    assert_eq!(stream, (400, "unsupported".to_owned()));

    let (status, _, v) = send("GET", &format!("{base}/nowhere"), None);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // The server still answers after all of that.
    let (status, v) = post(base, "/v1/functions/alpha", &json!({"input": "fine"}));
    assert_eq!(
        (status, &v["output"]["text"]),
        (200, &json!(direct(&alpha, "fine")))
    );
}

/// Requests that keep the model busy: many inputs, many tokens each.
fn heavy_body() -> Value {
    let inputs: Vec<String> = (0..32).map(|i| format!("input number {i}")).collect();
    json!({"inputs": inputs, "max_tokens": 64})
}

#[test]
fn a_full_queue_answers_429_with_retry_after_and_a_slow_request_504() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _, _) = fixture(dir.path());
    let options = ServeOptions {
        queue_capacity: 1,
        max_batch_inputs: 32,
        ..ServeOptions::default()
    };
    let server = Running::start(registry, options);
    let base = server.base.clone();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let url = format!("{base}/v1/functions/alpha");
            std::thread::spawn(move || send("POST", &url, Some(&heavy_body().to_string())))
        })
        .collect();
    let answers: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let full: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(
        !full.is_empty(),
        "16 clients, one queue slot: some must be refused"
    );
    for (status, retry, v) in &answers {
        match status {
            200 => assert_eq!(v["outputs"].as_array().unwrap().len(), 32),
            429 => {
                assert_eq!(v["error"]["code"], "queue_full");
                assert_eq!(retry.as_deref(), Some("1"));
            }
            other => panic!("unexpected status {other}: {v}"),
        }
    }
    drop(server);

    let options = ServeOptions {
        request_timeout: Duration::from_millis(1),
        ..ServeOptions::default()
    };
    let (registry, _, _) = fixture(dir.path());
    let server = Running::start(registry, options);
    let (status, v) = post(&server.base, "/v1/functions/alpha", &heavy_body());
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (504, Some("timeout")),
        "{v}"
    );
}

#[test]
fn reload_swaps_functions_and_shutdown_finishes_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, alpha, _) = fixture(dir.path());
    let mut only_beta = Registry::new();
    let beta = registry.get("beta").unwrap().clone();
    only_beta.insert("beta", beta.program, beta.function);

    let mut server = Running::start(registry, ServeOptions::default());
    let base = server.base.clone();
    let in_flight: Vec<_> = (0..6)
        .map(|_| {
            let url = format!("{base}/v1/functions/alpha");
            std::thread::spawn(move || send("POST", &url, Some(&heavy_body().to_string())))
        })
        .collect();
    // Let them arrive, then reload: queued requests finish on the program they were queued for.
    std::thread::sleep(Duration::from_millis(500));
    server.handle.replace_registry(only_beta);
    let (status, v) = post(&base, "/v1/functions/alpha", &json!({"input": "x"}));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("unknown_function"))
    );
    let (status, _) = post(&base, "/v1/functions/beta", &json!({"input": "x"}));
    assert_eq!(status, 200);

    server.shutdown();
    let long = CallOptions {
        max_tokens: Some(64),
        ..CallOptions::default()
    };
    let expected: Vec<String> = (0..32)
        .map(|i| {
            alpha
                .call(&format!("input number {i}"), &long)
                .unwrap()
                .text
        })
        .collect();
    let mut finished = 0;
    for client in in_flight {
        let (status, _, v) = client.join().unwrap();
        // A client that connected after the listener closed is refused by the OS, not lost:
        // `send` would have panicked. Every accepted request is answered in full.
        assert_eq!(status, 200, "{v}");
        let texts: Vec<String> = v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(texts, expected);
        finished += 1;
    }
    assert_eq!(finished, 6);
    assert!(ureq::get(&format!("{base}/health")).call().is_err());
}
