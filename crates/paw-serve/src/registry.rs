//! The functions a server answers for: each a program bound to its interpreter, addressed by
//! name and by program id.

use std::collections::BTreeMap;

use paw_format::ProgramId;
use paw_rt::Function;

/// One served function.
#[derive(Debug, Clone)]
pub struct Served {
    pub name: String,
    pub program: ProgramId,
    pub function: Function,
}

/// The served functions. Built once per start or reload and then shared read-only.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_name: BTreeMap<String, Served>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every function of a project's lock, under its lock name.
    pub fn from_project(project: &paw::Project) -> Self {
        let mut registry = Self::new();
        for name in project.names() {
            // Every name a project lists is locked and bound.
            if let (Some(locked), Ok(function)) = (project.locked(name), project.function(name)) {
                registry.insert(name, locked.program, function.clone());
            }
        }
        registry
    }

    /// Adds (or replaces) the function served as `name`.
    pub fn insert(&mut self, name: &str, program: ProgramId, function: Function) {
        self.by_name.insert(
            name.to_owned(),
            Served {
                name: name.to_owned(),
                program,
                function,
            },
        );
    }

    /// The function named `reference`, else the one whose program id is `reference` (full
    /// `b3:` id).
    pub fn get(&self, reference: &str) -> Option<&Served> {
        self.by_name.get(reference).or_else(|| {
            self.by_name
                .values()
                .find(|s| s.program.to_string() == reference)
        })
    }

    /// The served functions, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Served> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
