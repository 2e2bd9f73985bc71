//! How an MCP tool's arguments carry its action's input: an action whose input schema is an
//! object, or that declares none, takes the arguments as they are; any other takes them under
//! `input`, and an argument beside it is refused rather than dropped.

use airlock_abi::manifest::ActionDecl;
use rmcp::model::JsonObject;
use serde_json::Value;

/// Whether an input schema describes an object (so the tool's arguments are the input):
/// `"type": "object"` (or a list of types that is just that).
pub(crate) fn takes_object(schema: Option<&Value>) -> bool {
    match schema.and_then(|s| s.get("type")) {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(types)) => types.len() == 1 && types[0] == "object",
        _ => false,
    }
}

/// How a tool's arguments carry the action's input.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arguments {
    /// The arguments are the input: its schema is an object.
    Are,
    /// The arguments are the input, and none (or `{}`) is `null`: it declares no schema.
    Any,
    /// The input is the `input` argument: its schema is not an object.
    Wrapped,
}

impl Arguments {
    pub(crate) fn of(action: &ActionDecl) -> Self {
        match &action.input_schema {
            None => Self::Any,
            schema if takes_object(schema.as_ref()) => Self::Are,
            Some(_) => Self::Wrapped,
        }
    }

    /// The input in a call's arguments, or why they cannot carry one.
    pub(crate) fn input(self, arguments: Option<JsonObject>) -> Result<Value, String> {
        match (self, arguments) {
            (Self::Are, arguments) => Ok(Value::Object(arguments.unwrap_or_default())),
            (Self::Any, None) => Ok(Value::Null),
            (Self::Any, Some(arguments)) if arguments.is_empty() => Ok(Value::Null),
            (Self::Any, Some(arguments)) => Ok(Value::Object(arguments)),
            (Self::Wrapped, None) => Ok(Value::Null),
            (Self::Wrapped, Some(mut arguments)) => {
                let input = arguments.remove("input").unwrap_or(Value::Null);
                if arguments.is_empty() {
                    Ok(input)
                } else {
                    let extra: Vec<&String> = arguments.keys().collect();
                    Err(format!(
                        "this tool takes its input under \"input\" alone; the arguments \
                         {extra:?} would be dropped"
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Option<JsonObject> {
        value.as_object().cloned()
    }

    #[test]
    fn arguments_are_the_input_or_under_input_and_never_dropped() {
        assert_eq!(
            Arguments::Any.input(object(json!({"name": "Ada"}))),
            Ok(json!({"name": "Ada"}))
        );
        assert_eq!(Arguments::Any.input(object(json!({}))), Ok(Value::Null));
        assert_eq!(Arguments::Any.input(None), Ok(Value::Null));
        assert_eq!(Arguments::Are.input(None), Ok(json!({})));
        assert_eq!(
            Arguments::Wrapped.input(object(json!({"input": 5}))),
            Ok(json!(5))
        );
        let refused = Arguments::Wrapped
            .input(object(json!({"input": 5, "extra": 1})))
            .expect_err("refused");
        assert!(refused.contains("\"extra\""), "{refused}");
    }
}
