//! `paw.toml`: parsing, checking and resolving paths (relative to the manifest's directory).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use paw_store::{is_function_name, read_text_at_most};
use serde::Deserialize;

/// The manifest's file name in a project directory.
pub const MANIFEST_FILE: &str = "paw.toml";

/// Largest manifest read.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    /// Syntax, unknown keys and wrong types; the message carries the line.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: function name `{name}` is not an identifier (letters, digits, `_`, `-`; a letter or `_` first; at most 64)")]
    Name { path: PathBuf, name: String },
    #[error("{path}: function `{name}` is declared twice")]
    Duplicate { path: PathBuf, name: String },
    #[error("{path}: function `{name}` needs exactly one of `spec` and `spec-file`")]
    Spec { path: PathBuf, name: String },
    #[error("{path}: function `{name}` gives more than one output contract ({keys})")]
    Contract {
        path: PathBuf,
        name: String,
        keys: String,
    },
    #[error("{path}: function `{name}`: threshold {value} is not within 0..=1")]
    Threshold {
        path: PathBuf,
        name: String,
        value: f64,
    },
    #[error("{path}: function `{name}` has no teacher and no examples: nothing to compile from")]
    NothingToCompile { path: PathBuf, name: String },
    #[error("{path} declares no function `{name}` (declared: {declared})")]
    UnknownFunction {
        path: PathBuf,
        name: String,
        declared: String,
    },
}

/// How test answers are compared (see `spec/paw-test.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Exact,
    Normalised,
}

/// A model: a manifest id, or a path (relative paths resolved against the manifest's
/// directory); the teacher may also be `none` (compile from the examples only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Named(String),
    Path(PathBuf),
    None,
}

/// A function's output contract, as declared (the compiler infers one when none is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractDecl {
    Infer,
    Labels(Vec<String>),
    Pattern(String),
    JsonSchema(PathBuf),
    Grammar(PathBuf),
    Free(u32),
    Without,
}

/// One declared function, every default applied and every path resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDecl {
    pub name: String,
    /// The spec text, read from `spec-file` when given that way.
    pub spec: SpecSource,
    pub examples: Option<PathBuf>,
    pub tests: Option<PathBuf>,
    pub metric: Metric,
    pub threshold: f64,
    pub interpreter: Option<ModelRef>,
    pub teacher: Option<ModelRef>,
    pub seed: u64,
    pub steps: Option<usize>,
    pub train_items: Option<usize>,
    pub contract: ContractDecl,
}

/// Where a spec comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecSource {
    Inline(String),
    File(PathBuf),
}

/// `[test]`: defaults of every function's test settings.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestDefaults {
    #[serde(default = "default_metric")]
    pub metric: Metric,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

impl Default for TestDefaults {
    fn default() -> Self {
        Self {
            metric: default_metric(),
            threshold: default_threshold(),
        }
    }
}

fn default_metric() -> Metric {
    Metric::Exact
}

fn default_threshold() -> f64 {
    0.9
}

/// A parsed and checked `paw.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectManifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its directory: every relative path is resolved against it.
    pub dir: PathBuf,
    pub test: TestDefaults,
    pub functions: Vec<FunctionDecl>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ManifestToml {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    test: TestDefaults,
    #[serde(default, rename = "function")]
    functions: Vec<FunctionToml>,
    /// `paw test`'s prebuilt programs (`spec/paw-test.md`); not built.
    #[serde(default, rename = "program")]
    programs: Vec<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Defaults {
    interpreter: Option<String>,
    teacher: Option<String>,
    seed: Option<u64>,
    steps: Option<usize>,
    train_items: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FunctionToml {
    name: String,
    spec: Option<String>,
    spec_file: Option<PathBuf>,
    examples: Option<PathBuf>,
    tests: Option<PathBuf>,
    metric: Option<Metric>,
    threshold: Option<f64>,
    interpreter: Option<String>,
    teacher: Option<String>,
    seed: Option<u64>,
    steps: Option<usize>,
    train_items: Option<usize>,
    labels: Option<Vec<String>>,
    pattern: Option<String>,
    json_schema: Option<PathBuf>,
    grammar: Option<PathBuf>,
    free: Option<u32>,
    #[serde(default)]
    no_contract: bool,
}

impl ProjectManifest {
    /// Reads and checks the manifest at `path` (a `paw.toml` file).
    pub fn read(path: &Path) -> Result<Self, ProjectError> {
        let text = read_text_at_most(path, MAX_MANIFEST_BYTES)
            .map_err(|source| ProjectError::Io {
                path: path.to_owned(),
                source,
            })?
            .ok_or_else(|| ProjectError::TooLarge {
                path: path.to_owned(),
                max: MAX_MANIFEST_BYTES,
            })?;
        Self::parse(&text, path)
    }

    /// Parses manifest text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ProjectError> {
        let raw: ManifestToml = toml::from_str(text).map_err(|e| ProjectError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let _ = raw.programs;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let resolve = |p: &Path| dir.join(p);
        let model = |m: &str, may_be_none: bool| -> ModelRef {
            if may_be_none && m == "none" {
                ModelRef::None
            } else if m.contains('/') || m.ends_with(".gguf") {
                ModelRef::Path(resolve(Path::new(m)))
            } else {
                ModelRef::Named(m.to_owned())
            }
        };
        let d = &raw.defaults;
        let mut seen = BTreeSet::new();
        let mut functions = Vec::with_capacity(raw.functions.len());
        for f in raw.functions {
            let err_path = path.to_owned();
            if !is_function_name(&f.name) {
                return Err(ProjectError::Name {
                    path: err_path,
                    name: f.name,
                });
            }
            if !seen.insert(f.name.clone()) {
                return Err(ProjectError::Duplicate {
                    path: err_path,
                    name: f.name,
                });
            }
            let spec = match (f.spec, f.spec_file) {
                (Some(s), None) => SpecSource::Inline(s),
                (None, Some(p)) => SpecSource::File(resolve(&p)),
                _ => {
                    return Err(ProjectError::Spec {
                        path: err_path,
                        name: f.name,
                    })
                }
            };
            let given: Vec<&str> = [
                ("labels", f.labels.is_some()),
                ("pattern", f.pattern.is_some()),
                ("json-schema", f.json_schema.is_some()),
                ("grammar", f.grammar.is_some()),
                ("free", f.free.is_some()),
                ("no-contract", f.no_contract),
            ]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(k, _)| *k)
            .collect();
            if given.len() > 1 {
                return Err(ProjectError::Contract {
                    path: err_path,
                    name: f.name,
                    keys: given.join(", "),
                });
            }
            let contract = if let Some(l) = f.labels {
                ContractDecl::Labels(l)
            } else if let Some(p) = f.pattern {
                ContractDecl::Pattern(p)
            } else if let Some(p) = f.json_schema {
                ContractDecl::JsonSchema(resolve(&p))
            } else if let Some(p) = f.grammar {
                ContractDecl::Grammar(resolve(&p))
            } else if let Some(n) = f.free {
                ContractDecl::Free(n)
            } else if f.no_contract {
                ContractDecl::Without
            } else {
                ContractDecl::Infer
            };
            let threshold = f.threshold.unwrap_or(raw.test.threshold);
            if !(0.0..=1.0).contains(&threshold) {
                return Err(ProjectError::Threshold {
                    path: err_path,
                    name: f.name,
                    value: threshold,
                });
            }
            let teacher = f
                .teacher
                .as_deref()
                .or(d.teacher.as_deref())
                .map(|t| model(t, true));
            let examples = f.examples.map(|p| resolve(&p));
            if teacher == Some(ModelRef::None) && examples.is_none() {
                return Err(ProjectError::NothingToCompile {
                    path: err_path,
                    name: f.name,
                });
            }
            functions.push(FunctionDecl {
                name: f.name,
                spec,
                examples,
                tests: f.tests.map(|p| resolve(&p)),
                metric: f.metric.unwrap_or(raw.test.metric),
                threshold,
                interpreter: f
                    .interpreter
                    .as_deref()
                    .or(d.interpreter.as_deref())
                    .map(|m| model(m, false)),
                teacher,
                seed: f.seed.or(d.seed).unwrap_or(0),
                steps: f.steps.or(d.steps),
                train_items: f.train_items.or(d.train_items),
                contract,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            dir,
            test: raw.test,
            functions,
        })
    }

    /// The declared functions named in `names` (all of them when `names` is empty), in
    /// manifest order; an unknown name is an error.
    pub fn select(&self, names: &[String]) -> Result<Vec<&FunctionDecl>, ProjectError> {
        if let Some(unknown) = names
            .iter()
            .find(|n| !self.functions.iter().any(|f| &f.name == *n))
        {
            return Err(ProjectError::UnknownFunction {
                path: self.path.clone(),
                name: unknown.clone(),
                declared: self
                    .functions
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(self
            .functions
            .iter()
            .filter(|f| names.is_empty() || names.contains(&f.name))
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[defaults]
teacher = "none"
seed = 7

[test]
threshold = 0.8

[[function]]
name = "log_alert"
spec-file = "specs/log.txt"
examples = "log.examples.jsonl"
labels = ["ALERT", "QUIET"]

[[function]]
name = "shout"
spec = "Upper-case the input."
examples = "shout.jsonl"
interpreter = "models/tiny.gguf"
threshold = 1.0
seed = 1
"#;

    #[test]
    fn defaults_apply_and_paths_resolve_against_the_manifest() {
        let m = ProjectManifest::parse(GOOD, Path::new("proj/paw.toml")).unwrap();
        let [log, shout] = &m.functions[..] else {
            panic!("two functions")
        };
        assert_eq!(
            log.spec,
            SpecSource::File(PathBuf::from("proj/specs/log.txt"))
        );
        assert_eq!(log.examples, Some(PathBuf::from("proj/log.examples.jsonl")));
        assert_eq!(log.teacher, Some(ModelRef::None));
        assert_eq!((log.seed, log.threshold), (7, 0.8));
        assert_eq!(
            log.contract,
            ContractDecl::Labels(vec!["ALERT".into(), "QUIET".into()])
        );
        assert_eq!(
            shout.interpreter,
            Some(ModelRef::Path(PathBuf::from("proj/models/tiny.gguf")))
        );
        assert_eq!((shout.seed, shout.threshold), (1, 1.0));
        assert_eq!(shout.contract, ContractDecl::Infer);
        assert_eq!(m.select(&["shout".into()]).unwrap().len(), 1);
        assert!(matches!(
            m.select(&["nope".into()]),
            Err(ProjectError::UnknownFunction { .. })
        ));
    }

    #[test]
    fn every_mistake_is_a_typed_error_with_its_place() {
        let p = Path::new("paw.toml");
        let bad = |text: &str| ProjectManifest::parse(text, p).unwrap_err();
        let e = bad(&GOOD.replace("threshold = 0.8", "treshold = 0.8"));
        assert!(matches!(e, ProjectError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("line 7"), "{e}");
        assert!(matches!(
            bad(&GOOD.replace("\"shout\"", "\"log_alert\"")),
            ProjectError::Duplicate { .. }
        ));
        assert!(matches!(
            bad(&GOOD.replace("\"shout\"", "\"sh out\"")),
            ProjectError::Name { .. }
        ));
        assert!(matches!(
            bad(&GOOD.replace("spec-file = \"specs/log.txt\"\n", "")),
            ProjectError::Spec { .. }
        ));
        assert!(matches!(
            bad(&GOOD.replace("labels =", "pattern = \"x\"\nlabels =")),
            ProjectError::Contract { .. }
        ));
        assert!(matches!(
            bad(&GOOD.replace("threshold = 1.0", "threshold = 1.5")),
            ProjectError::Threshold { .. }
        ));
        assert!(matches!(
            bad(&GOOD.replace("examples = \"shout.jsonl\"\n", "")),
            ProjectError::NothingToCompile { .. }
        ));
    }
}
