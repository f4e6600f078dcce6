//! What every subcommand's flags share: enum values parsed by their library names, the flags
//! given as config keys, and the library's defaults shown in `--help`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Parses a flag's value by the name the library gives it in config files (`pack-bestfit`,
/// `fixed_root`, `cl100k_base`), so that flags and files accept the same words.
pub fn named<T: DeserializeOwned>(value: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(value.to_string())).map_err(|e| e.to_string())
}

/// The flags that were given, as config keys: `flags` serialized, without the ones left out
/// (`None`, empty lists) and those that are not settings (`#[serde(skip)]`).
pub fn given(flags: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(flags) {
        Ok(Value::Object(mut map)) => {
            map.retain(|_, v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
            map
        }
        _ => Map::new(),
    }
}

/// A library object's settings as a table (its defaults, when it is built with defaults).
pub fn table(value: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Appends `[default: …]` to the help of every flag of `command` whose id is a key of
/// `defaults` with a plain value, so that `--help` shows the library's defaults without the
/// CLI restating them. `shown` gives the text for flags that are not keys themselves.
pub fn annotate(
    command: clap::Command,
    defaults: &Map<String, Value>,
    shown: impl Fn(&str) -> Option<String>,
) -> clap::Command {
    let ids: Vec<String> = command
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    let mut command = command;
    for id in ids {
        let text = shown(&id).or_else(|| match defaults.get(&id)? {
            Value::Null | Value::Object(_) | Value::Array(_) => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        });
        if let Some(text) = text {
            command = command.mut_arg(id, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {text}]"))
            });
        }
    }
    command
}
