//! Fetching a `hub-file` model through the hub's client, against a loopback mock of the hub's
//! download protocol (no hub is reachable here): `HF_ENDPOINT` is honoured, the pinned
//! SHA-256 decides what is installed, and a second fetch downloads nothing.
//!
//! One test in its own binary: it sets `HF_ENDPOINT` for the process.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use paw_store::fetch::{fetch_model, fetchable, FetchError};
use paw_store::{Manifest, Store};
use sha2::{Digest, Sha256};

/// A GGUF header and a few bytes: the store checks size and hashes, not the contents.
const TINY: &[u8] =
    b"GGUF\x03\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0tiny model served by a mock hub";

/// Serves `files` (URL path -> bytes) the way the hub's `resolve` endpoint does for the
/// client: `Range` requests answered 206 with `Content-Range`, an `ETag` and `X-Repo-Commit`;
/// anything else 404. Counts the requests that carried file bytes beyond the first.
fn mock_hub(files: BTreeMap<String, Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let downloads = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&downloads);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut range: Option<(usize, Option<usize>)> = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some((a, b)) = lower
                    .strip_prefix("range: bytes=")
                    .and_then(|v| v.trim().split_once('-'))
                {
                    range = a.parse().ok().map(|a| (a, b.parse().ok()));
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_owned();
            let reply = match files.get(&path) {
                Some(bytes) => {
                    let (start, last) = range.unwrap_or((0, None));
                    let start = start.min(bytes.len());
                    let end = last.map_or(bytes.len(), |l| (l + 1).min(bytes.len()));
                    let body: &[u8] = &bytes[start..end];
                    // The client's metadata probe asks for byte 0 alone; the rest is download.
                    if body.len() > 1 || start > 0 {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let mut head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n\
                         Content-Range: bytes {start}-{}/{}\r\nETag: \"{}\"\r\n\
                         X-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\n\
                         Connection: close\r\n\r\n",
                        body.len(),
                        end.saturating_sub(1),
                        bytes.len(),
                        hex::encode(Sha256::digest(bytes)),
                    )
                    .into_bytes();
                    head.extend_from_slice(body);
                    head
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&reply);
        }
    });
    (format!("http://{addr}"), downloads)
}

fn manifest(sha256: &str, size: usize) -> Manifest {
    Manifest::parse(&format!(
        r#"
default_interpreter = "tiny"
default_teacher = "teach"

[[model]]
id = "tiny"
name = "tiny"
architecture = "llama"
role = "interpreter"
format = "gguf"
size = {size}
sha256 = "{sha256}"
license = "MIT"
source = {{ kind = "hub-file", repo = "paw-test/tiny", revision = "main", file = "tiny.gguf" }}

[[model]]
id = "teach"
name = "teacher, served with wrong bytes"
architecture = "llama"
role = "teacher"
format = "gguf"
size = {size}
sha256 = "{sha256}"
license = "MIT"
source = {{ kind = "hub-file", repo = "paw-test/other", revision = "main", file = "tiny.gguf" }}
"#
    ))
    .unwrap()
}

#[test]
fn hub_file_models_download_through_hf_endpoint_and_verify() {
    let mut tampered = TINY.to_vec();
    tampered[30] ^= 1;
    let files = BTreeMap::from([
        (
            "/paw-test/tiny/resolve/main/tiny.gguf".to_owned(),
            TINY.to_vec(),
        ),
        (
            "/paw-test/other/resolve/main/tiny.gguf".to_owned(),
            tampered,
        ),
    ]);
    let (endpoint, downloads) = mock_hub(files);
    // The only test in this binary: nothing else reads the environment meanwhile.
    std::env::set_var("HF_ENDPOINT", &endpoint);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let m = manifest(&hex::encode(Sha256::digest(TINY)), TINY.len());

    let mut events = Vec::new();
    let installed = fetch_model(&store, fetchable(&m, "tiny").unwrap(), &mut |e| {
        events.push(e.to_string());
    })
    .unwrap();
    assert_eq!(std::fs::read(&installed.path).unwrap(), TINY);
    assert_eq!(installed.meta.manifest_id.as_deref(), Some("tiny"));
    assert!(
        events
            .iter()
            .any(|e| e.contains("from the Hugging Face hub")),
        "{events:?}"
    );
    let fetched = downloads.load(Ordering::SeqCst);
    assert!(fetched >= 1, "the file was downloaded from the mock");
    // Nothing of the temporary download is left in the store.
    assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);

    // Fetching again re-verifies the installed file and downloads nothing.
    fetch_model(&store, fetchable(&m, "tiny").unwrap(), &mut |_| {}).unwrap();
    assert_eq!(downloads.load(Ordering::SeqCst), fetched);

    // Bytes whose SHA-256 differs from the manifest's are refused and nothing is installed.
    let other = Store::open(dir.path().join("other")).unwrap();
    let err = fetch_model(&other, fetchable(&m, "teach").unwrap(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::HubMismatch { .. }), "{err}");
    assert!(other.installed_models().unwrap().is_empty());

    // A file the hub does not have is a typed error naming it.
    let mut entry = fetchable(&m, "tiny").unwrap().clone();
    entry.source = paw_store::Source::HubFile {
        repo: "paw-test/none".into(),
        revision: "main".into(),
        file: "tiny.gguf".into(),
    };
    let err = fetch_model(&other, &entry, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, FetchError::Hub { repo, .. } if repo == "paw-test/none"),
        "{err}"
    );
}
