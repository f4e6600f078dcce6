//! [`Options`]: the settings of a run as the command line and the Python package give them,
//! each optional (one left out keeps [`Preprocess::new`]'s default), applied in one place.

use std::path::PathBuf;

use seqwarm_format::{OnError, OutputLayout, ShardEncoding};
use serde::Deserialize;

use crate::error::{PreprocessError, Result};
use crate::input::InputFormat;
use crate::run::Preprocess;
use crate::tokenizer::Tokenizer;

/// A run's settings by their flag names (`shard_tokens` for `--shard-tokens`), each optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is the `with_*` setter of the same name, or the flag
pub struct Options {
    /// A built-in tokenizer's name or a `tokenizer.json` path ([`Tokenizer::resolve`]).
    pub tokenizer: Option<String>,
    pub eos_token: Option<String>,
    pub bos_token: Option<String>,
    pub eos: Option<bool>,
    pub layout: Option<OutputLayout>,
    pub encoding: Option<ShardEncoding>,
    pub shard_tokens: Option<u64>,
    pub row_group_tokens: Option<usize>,
    pub prefix: Option<String>,
    pub worker: Option<usize>,
    pub workers: Option<usize>,
    pub on_error: Option<OnError>,
    pub threads: Option<usize>,
    pub input_format: Option<InputFormat>,
    pub text_field: Option<String>,
    pub text_column: Option<String>,
    pub separator: Option<String>,
}

impl Options {
    /// The run over `inputs` into `output` with these settings.
    pub fn build<I, S>(self, inputs: I, output: impl Into<PathBuf>) -> Result<Preprocess>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut run = Preprocess::new(inputs, output)
            .with_separator(self.separator)
            .with_threads(self.threads);
        match &self.tokenizer {
            Some(given) => {
                run = run.with_tokenizer(Tokenizer::resolve(
                    given,
                    self.eos_token.as_deref(),
                    self.bos_token.as_deref(),
                )?);
            }
            None if self.eos_token.is_some() || self.bos_token.is_some() => {
                return Err(PreprocessError::Config {
                    field: "tokenizer",
                    reason: "eos_token and bos_token (--eos-token, --bos-token) name tokens of a \
                             tokenizer.json: give its path as the tokenizer"
                        .into(),
                });
            }
            None => {}
        }
        if let Some(eos) = self.eos {
            run = run.with_eos(eos);
        }
        if let Some(layout) = self.layout {
            run = run.with_layout(layout);
        }
        if let Some(encoding) = self.encoding {
            run = run.with_encoding(encoding);
        }
        if let Some(tokens) = self.shard_tokens {
            run = run.with_shard_tokens(tokens);
        }
        if let Some(tokens) = self.row_group_tokens {
            run = run.with_row_group_tokens(tokens);
        }
        if let Some(prefix) = self.prefix {
            run = run.with_prefix(prefix);
        }
        if self.worker.is_some() || self.workers.is_some() {
            run = run.with_worker(self.worker.unwrap_or(0), self.workers.unwrap_or(1));
        }
        if let Some(on_error) = self.on_error {
            run = run.with_on_error(on_error);
        }
        if let Some(format) = self.input_format {
            run = run.with_input_format(format);
        }
        if let Some(field) = self.text_field {
            run = run.with_text_field(field);
        }
        if let Some(column) = self.text_column {
            run = run.with_text_column(column);
        }
        Ok(run)
    }
}
