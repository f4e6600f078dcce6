//! Rust errors as the package's Python exceptions (`seqwarm.errors`): `ConfigError`,
//! `DataError` or `StateError`, each a `SeqwarmError`, with the file, row group, row, column
//! and setting the error names as attributes (`None` where it names none).

use pyo3::prelude::*;
use seqwarm_loader::LoaderError;
use seqwarm_schedule::ScheduleError;

/// Which exception class an error becomes.
#[derive(Clone, Copy)]
enum Class {
    Config,
    Data,
    State,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Self::Config => "ConfigError",
            Self::Data => "DataError",
            Self::State => "StateError",
        }
    }
}

/// Where an error points.
#[derive(Default)]
struct Place {
    file: Option<String>,
    row_group: Option<usize>,
    row: Option<usize>,
    column: Option<String>,
    field: Option<String>,
}

fn file(file: &str) -> Place {
    Place {
        file: Some(file.to_owned()),
        ..Place::default()
    }
}

fn field(field: &str) -> Place {
    Place {
        field: Some(field.to_owned()),
        ..Place::default()
    }
}

fn cell(f: &str, row_group: usize, row: Option<usize>, column: &str) -> Place {
    Place {
        file: Some(f.to_owned()),
        row_group: Some(row_group),
        row,
        column: Some(column.to_owned()),
        field: None,
    }
}

fn classify(e: &LoaderError) -> (Class, Place) {
    use LoaderError as E;
    match e {
        E::Location { location, .. } | E::NoShards { location } => (Class::Data, file(location)),
        E::Io { file: f, .. }
        | E::NotParquet { file: f, .. }
        | E::Metadata { file: f, .. }
        | E::EmptyShard { file: f }
        | E::LocalIo { file: f, .. }
        | E::Format(seqwarm_format::FormatError::RawTokens { file: f, .. }) => {
            (Class::Data, file(f))
        }
        E::MissingColumn {
            file: f, column, ..
        }
        | E::ColumnType {
            file: f, column, ..
        } => (
            Class::Data,
            Place {
                column: Some(column.clone()),
                ..file(f)
            },
        ),
        E::Decode {
            file: f,
            row_group,
            column,
            ..
        } => (Class::Data, cell(f, *row_group, None, column)),
        E::Null {
            file: f,
            row_group,
            row,
            column,
        }
        | E::LengthMismatch {
            file: f,
            row_group,
            row,
            column,
            ..
        }
        | E::TokenOutOfRange {
            file: f,
            row_group,
            row,
            column,
            ..
        } => (Class::Data, cell(f, *row_group, Some(*row), column)),
        E::Checksum {
            file: f, row_group, ..
        } => (
            Class::Data,
            Place {
                row_group: Some(*row_group),
                ..file(f)
            },
        ),
        E::Config { field: name, .. } => (Class::Config, field(name)),
        E::UnknownKey { key, .. } | E::InvalidSetting { key, .. } => (Class::Config, field(key)),
        E::Schedule(e) => (Class::Config, schedule_place(e)),
        E::State { .. } => (Class::State, Place::default()),
        // The stage's refusal of documents, a failed batch transform, a reader that stopped,
        // and whatever a later version adds: all about the data being read.
        _ => (Class::Data, Place::default()),
    }
}

fn schedule_place(e: &ScheduleError) -> Place {
    match e {
        ScheduleError::InvalidField { field: name, .. } => field(&format!("schedule.{name}")),
        _ => field("schedule"),
    }
}

fn raise(py: Python<'_>, class: Class, message: String, place: Place) -> PyErr {
    let built = (|| -> PyResult<PyErr> {
        let module = py.import("seqwarm.errors")?;
        let exception = module.getattr(class.name())?.call1((message.clone(),))?;
        exception.setattr("file", place.file)?;
        exception.setattr("row_group", place.row_group)?;
        exception.setattr("row", place.row)?;
        exception.setattr("column", place.column)?;
        exception.setattr("field", place.field)?;
        Ok(PyErr::from_value(exception))
    })();
    // Without the Python half (an extension imported alone), a plain ValueError still says it.
    built.unwrap_or_else(|_| pyo3::exceptions::PyValueError::new_err(message))
}

/// A loader error as a Python exception.
pub fn loader_error(py: Python<'_>, e: &LoaderError) -> PyErr {
    let (class, place) = classify(e);
    raise(py, class, e.to_string(), place)
}

/// A schedule error as a `ConfigError`.
pub fn schedule_error(py: Python<'_>, e: &ScheduleError) -> PyErr {
    raise(py, Class::Config, e.to_string(), schedule_place(e))
}

/// A setting that is not valid JSON-able input, or any other refusal of a setting.
pub fn config_error(py: Python<'_>, setting: &str, message: String) -> PyErr {
    raise(py, Class::Config, message, field(setting))
}

/// A location or file that holds no readable shards, as a `DataError` naming it.
pub fn data_error(py: Python<'_>, location: &str, message: String) -> PyErr {
    raise(py, Class::Data, message, file(location))
}

/// A preprocessing error: bad input is a `DataError` naming it, a setting (or an output
/// directory holding another run's shards) a `ConfigError`.
pub fn preprocess_error(py: Python<'_>, e: &seqwarm::preprocess::PreprocessError) -> PyErr {
    use seqwarm::preprocess::PreprocessError as E;
    let (class, place) = match e {
        E::Config { field: name, .. } => (Class::Config, field(name)),
        E::Mismatch { path, .. } => (Class::Config, file(path)),
        E::Input { location, .. } => (Class::Data, file(location)),
        E::NoInputs { .. } => (Class::Config, field("inputs")),
        E::Io { path, .. } => (Class::Data, file(path)),
        _ => (Class::Data, Place::default()),
    };
    raise(py, class, e.to_string(), place)
}

/// A checkpoint that cannot be read.
pub fn state_error(py: Python<'_>, message: String) -> PyErr {
    raise(py, Class::State, message, Place::default())
}
