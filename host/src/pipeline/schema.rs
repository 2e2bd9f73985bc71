//! The JSON Schemas a manifest carries — each action's input and output, the plugin's config,
//! the payload of each topic it declares —
//! compiled once per load, in stage 3 ([`Schemas::compile`], which only the pipeline can call),
//! carried with the checked library to the loaded plugin, and used to refuse an input or a
//! config that does not fit before any plugin code sees it. The schemas may only refer within
//! themselves: nothing is fetched.

use airlock_abi::manifest::Manifest;
use boon::{Compiler, ErrorKind, SchemaIndex, ValidationError};

/// A manifest's compiled schemas.
pub(crate) struct Schemas {
    compiled: boon::Schemas,
    /// Per action, in manifest order: its input schema.
    inputs: Vec<Option<SchemaIndex>>,
    config: Option<SchemaIndex>,
    /// Per declared topic with a schema: the topic and its payload's schema.
    events: Vec<(String, SchemaIndex)>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas")
            .field(
                "inputs",
                &self.inputs.iter().filter(|i| i.is_some()).count(),
            )
            .field("config", &self.config.is_some())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl Schemas {
    /// Compiles every schema `manifest` declares; `None` if it declares none.
    ///
    /// # Errors
    ///
    /// Which schema is not a valid JSON Schema, and why.
    pub(super) fn compile(manifest: &Manifest) -> Result<Option<Self>, String> {
        let declares = manifest.config_schema.is_some()
            || manifest
                .actions
                .iter()
                .any(|a| a.input_schema.is_some() || a.output_schema.is_some())
            || manifest.events.iter().any(|e| e.schema.is_some());
        if !declares {
            return Ok(None);
        }
        let mut compiler = Compiler::new();
        // Nothing outside the manifest: no file, no network (a `$ref` elsewhere is an error).
        compiler.use_loader(Box::new(NothingOutside));
        let mut compiled = boon::Schemas::new();
        let mut one = |name: String, schema: &serde_json::Value| {
            let location = format!("urn:airlock:{name}");
            let invalid =
                |e: boon::CompileError| format!("{name} is not a valid JSON Schema: {e:#}");
            compiler
                .add_resource(&location, schema.clone())
                .map_err(invalid)?;
            compiler.compile(&location, &mut compiled).map_err(invalid)
        };
        let mut inputs = Vec::with_capacity(manifest.actions.len());
        for action in &manifest.actions {
            let name = &action.name;
            inputs.push(
                action
                    .input_schema
                    .as_ref()
                    .map(|s| one(format!("action {name}'s input_schema"), s))
                    .transpose()?,
            );
            if let Some(output) = &action.output_schema {
                one(format!("action {name}'s output_schema"), output)?;
            }
        }
        let config = manifest
            .config_schema
            .as_ref()
            .map(|s| one("config_schema".to_owned(), s))
            .transpose()?;
        let mut events = Vec::new();
        for event in &manifest.events {
            if let Some(schema) = &event.schema {
                let topic = &event.topic;
                events.push((
                    topic.clone(),
                    one(format!("event {topic}'s schema"), schema)?,
                ));
            }
        }
        Ok(Some(Self {
            compiled,
            inputs,
            config,
            events,
        }))
    }

    /// Whether `input` (JSON bytes) fits the input schema of the action at `index` (any input
    /// does when it has none).
    ///
    /// # Errors
    ///
    /// Where the input breaks the schema and which rule, in the schema's own terms.
    pub(crate) fn check_input(&self, index: usize, input: &[u8]) -> Result<(), String> {
        let Some(schema) = self.inputs.get(index).copied().flatten() else {
            return Ok(());
        };
        let value: serde_json::Value =
            airlock_abi::wire::parse(input).map_err(|e| format!("the input is not JSON: {e}"))?;
        self.compiled
            .validate(&value, schema)
            .map_err(|e| describe("the input", &e, true))
    }

    /// Whether `config` fits the config schema (any config does when there is none).
    ///
    /// # Errors
    ///
    /// As [`Schemas::check_input`].
    pub(crate) fn check_config(&self, config: &serde_json::Value) -> Result<(), String> {
        let Some(schema) = self.config else {
            return Ok(());
        };
        self.compiled
            .validate(config, schema)
            .map_err(|e| describe("the config", &e, false))
    }
}

impl Schemas {
    /// Whether `payload` fits the schema of `topic`, when the manifest declares one (any
    /// payload does on a topic declared without one, or not declared).
    ///
    /// # Errors
    ///
    /// As [`Schemas::check_input`], naming the topic.
    pub(crate) fn check_event(
        &self,
        topic: &str,
        payload: &serde_json::Value,
    ) -> Result<(), String> {
        let Some((_, schema)) = self.events.iter().find(|(t, _)| t == topic) else {
            return Ok(());
        };
        self.compiled
            .validate(payload, *schema)
            .map_err(|e| describe(&format!("the payload of {topic}"), &e, true))
    }
}

/// The loader of a manifest's schemas: refuses every resource outside them.
struct NothingOutside;

impl boon::UrlLoader for NothingOutside {
    fn load(&self, url: &str) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        Err(format!("{url} is outside the manifest; a schema may refer only within itself").into())
    }
}

/// The first rule broken, where (a JSON pointer into the value) and the schema's keyword that
/// says so (a JSON pointer into the schema), and how many more there are. Unless `values`, no
/// string of the value is quoted (a config's may have come from a secret).
fn describe(what: &str, error: &ValidationError<'_, '_>, values: bool) -> String {
    let mut leaves = Vec::new();
    let mut stack = vec![error];
    while let Some(e) = stack.pop() {
        if e.causes.is_empty() {
            leaves.push(e);
        }
        stack.extend(e.causes.iter().rev());
    }
    let first = leaves.first().copied().unwrap_or(error);
    let at = first.instance_location.to_string();
    let schema = first
        .schema_url
        .split_once('#')
        .map_or("", |(_, pointer)| pointer);
    let keyword = match first.kind.keyword_path() {
        Some(path) => format!("{schema}/{path}"),
        None => schema.to_owned(),
    };
    let more = match leaves.len() {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    let rule = match &first.kind {
        _ if values => first.kind.to_string(),
        ErrorKind::Pattern { want, .. } => format!("does not match pattern {want:?}"),
        ErrorKind::Format { want, .. } => format!("is not a valid {want}"),
        ErrorKind::ContentEncoding { want, .. } => format!("is not {want}-encoded"),
        ErrorKind::ContentMediaType { want, .. } => format!("is not of media type {want}"),
        kind => kind.to_string(),
    };
    format!(
        "{what} does not match its schema at {}: {rule} (schema #{keyword}){more}",
        if at.is_empty() { "/" } else { &at },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(actions: &str, config: &str) -> Manifest {
        Manifest::from_json(&format!(
            r#"{{"id": "s", "version": "1.0.0", "actions": {actions}{config}}}"#
        ))
        .expect("manifest")
    }

    #[test]
    fn an_input_that_breaks_the_schema_is_described_by_its_path_and_keyword() {
        let m = manifest(
            r#"[{"name": "count", "input_schema": {"type": "object",
                "properties": {"words": {"type": "integer", "minimum": 1}},
                "required": ["words"]}}, {"name": "free"}]"#,
            r#", "config_schema": {"type": "object", "properties": {"n": {"type": "string"}}}"#,
        );
        let schemas = Schemas::compile(&m).expect("valid").expect("some");
        assert_eq!(schemas.check_input(0, br#"{"words": 3}"#), Ok(()));
        let err = schemas
            .check_input(0, br#"{"words": "three"}"#)
            .expect_err("a string");
        assert!(err.contains("at /words"), "{err}");
        assert!(err.contains("#/properties/words/type"), "{err}");
        let err = schemas.check_input(0, b"{}").expect_err("missing");
        assert!(err.contains("words"), "{err}");
        assert!(err.contains("#/required"), "{err}");
        // An action without a schema takes anything; so does a config that fits.
        assert_eq!(schemas.check_input(1, b"[1, 2]"), Ok(()));
        assert_eq!(schemas.check_config(&serde_json::json!({"n": "x"})), Ok(()));
        assert!(schemas.check_config(&serde_json::json!({"n": 1})).is_err());
    }

    #[test]
    fn a_config_that_breaks_the_schema_is_described_without_its_strings() {
        let m = manifest(
            "[]",
            r#", "config_schema": {"type": "object", "properties": {
                "p": {"type": "string", "pattern": "^tok-"},
                "l": {"type": "array", "items": {"pattern": "^a"}}}}"#,
        );
        let schemas = Schemas::compile(&m).expect("valid").expect("some");
        for (config, wanted) in [
            (
                serde_json::json!({"p": "pa\\ss'w0rd\"x"}),
                "at /p: does not match pattern \"^tok-\"",
            ),
            (
                serde_json::json!({"l": ["a", "w0rd"]}),
                "at /l/1: does not match pattern",
            ),
        ] {
            let err = schemas.check_config(&config).expect_err("broken");
            assert!(err.contains(wanted) && !err.contains("w0rd"), "{err}");
        }
    }

    #[test]
    fn an_event_payload_is_checked_against_its_topic_schema() {
        let m = Manifest::from_json(
            r#"{"id": "s", "version": "1.0.0", "capabilities": ["events.publish:orders.*"],
                "events": [{"topic": "orders.created", "schema": {"type": "object",
                    "properties": {"total": {"type": "number"}}, "required": ["total"]}},
                    {"topic": "orders.noted"}]}"#,
        )
        .expect("manifest");
        let schemas = Schemas::compile(&m).expect("valid").expect("some");
        let ok = serde_json::json!({"total": 3.5});
        assert_eq!(schemas.check_event("orders.created", &ok), Ok(()));
        let err = schemas
            .check_event("orders.created", &serde_json::json!({"total": "lots"}))
            .expect_err("a string");
        assert!(
            err.starts_with("the payload of orders.created does not match"),
            "{err}"
        );
        assert!(err.contains("at /total"), "{err}");
        // Declared without a schema, or not declared: anything goes.
        assert_eq!(
            schemas.check_event("orders.noted", &serde_json::json!(1)),
            Ok(())
        );
        assert_eq!(
            schemas.check_event("orders.other", &serde_json::json!(1)),
            Ok(())
        );
        let bad = Manifest::from_json(
            r#"{"id": "s", "version": "1.0.0", "capabilities": ["events.publish:*"],
                "events": [{"topic": "t", "schema": {"type": 12}}]}"#,
        )
        .expect("manifest");
        let err = Schemas::compile(&bad).expect_err("invalid");
        assert!(err.contains("event t's schema"), "{err}");
    }

    #[test]
    fn a_manifest_without_schemas_compiles_to_nothing_and_a_bad_schema_is_named() {
        assert!(Schemas::compile(&manifest(r#"[{"name": "a"}]"#, ""))
            .expect("valid")
            .is_none());
        let err = Schemas::compile(&manifest(
            r#"[{"name": "a", "output_schema": {"type": "integer", "minimum": "one"}}]"#,
            "",
        ))
        .expect_err("invalid");
        assert!(err.contains("action a's output_schema"), "{err}");
        // Nothing is fetched: a reference outside the schema does not compile.
        let err = Schemas::compile(&manifest(
            r#"[{"name": "a", "input_schema": {"$ref": "https://example.com/s.json"}}]"#,
            "",
        ))
        .expect_err("remote");
        assert!(err.contains("input_schema"), "{err}");
        // Nor is a file read.
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside.json");
        std::fs::write(&outside, r#"{"type": "integer", "maximum": 3}"#).expect("write");
        let err = Schemas::compile(&manifest(
            &format!(
                r#"[{{"name": "a", "input_schema": {{"$ref": "file://{}"}}}}]"#,
                outside.display()
            ),
            "",
        ))
        .expect_err("a file");
        assert!(err.contains("outside the manifest"), "{err}");
    }
}
