//! The error type of the batcher crate.

/// Why a batch could not be built or transformed.
///
/// Variants name the field (and row or index where one is involved) so that a caller can tell
/// which tensor of which batch was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// A packed batch whose `cu_seqlens` has more entries than the fixed size asked for (a
    /// packer without a segment limit, or a limit larger than the size assumed).
    #[error(
        "field `{field}` has {entries} cu_seqlens entries, more than the fixed size {size}; set the packer's max_segments to the limit the size assumes"
    )]
    TooManySegments {
        /// The field the runs are counted in.
        field: String,
        /// Entries the batch needs.
        entries: usize,
        /// The fixed size asked for.
        size: usize,
    },
    /// A field name that is not one of the fields an operation knows.
    #[error("unknown field `{field}`; the fields are {known}")]
    UnknownField {
        /// The name given.
        field: String,
        /// The names known, comma-separated.
        known: String,
    },
    /// A field the operation needs is absent.
    #[error("batch has no `{field}` field, which {operation} requires")]
    MissingField {
        /// The missing field.
        field: String,
        /// The operation that needed it.
        operation: &'static str,
    },
    /// A per-sample (1-D) field where a sequence-shaped `[rows, seq]` one is required.
    #[error(
        "field `{field}` has shape {shape:?}, but {operation} requires every field to be sequence-shaped [rows, seq]"
    )]
    NotSequenceShaped {
        /// The field.
        field: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The operation that needed sequence shape.
        operation: &'static str,
    },
    /// A field whose shape differs from the one the operation requires.
    #[error("field `{field}` has shape {shape:?} but should have shape {expected:?} ({operation})")]
    ShapeMismatch {
        /// The field.
        field: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The shape required.
        expected: Vec<usize>,
        /// The operation.
        operation: &'static str,
    },
    /// A buffer whose size does not match the declared shape and dtype.
    #[error("field `{field}`: buffer of {bytes} bytes does not hold {elements} {dtype} elements")]
    BufferSize {
        /// The field (or `<tensor>` before it is named).
        field: String,
        /// Bytes given.
        bytes: usize,
        /// Elements the shape declares.
        elements: usize,
        /// The element type.
        dtype: crate::DType,
    },
    /// A field with a different number of rows than the batch.
    #[error("field `{field}` has {rows} rows but the batch has {expected}")]
    RowMismatch {
        /// The field.
        field: String,
        /// Its rows.
        rows: usize,
        /// The batch's rows.
        expected: usize,
    },
    /// The same field name twice in one batch.
    #[error("field `{field}` appears twice in the batch")]
    DuplicateField {
        /// The field.
        field: String,
    },
    /// A sequence length of zero was asked for.
    #[error("sequence length must be >= 1, got {len}")]
    InvalidLength {
        /// The length asked for.
        len: usize,
    },
    /// An end-of-sequence index (from `attention_mask`) outside a field's row.
    #[error(
        "field `{field}` row {row}: end-of-sequence index {index} is outside a row of {seq_len} tokens"
    )]
    IndexOutOfRange {
        /// The field.
        field: String,
        /// The row.
        row: usize,
        /// The index taken from `attention_mask`.
        index: i64,
        /// The row's length.
        seq_len: usize,
    },
    /// A streaming transform got a batch whose fields (names or dtypes) differ from the first.
    #[error("batch fields changed mid-stream: expected {expected:?}, got {got:?}")]
    FieldsChanged {
        /// Fields (name:dtype) of the first batch.
        expected: Vec<String>,
        /// Fields of this batch.
        got: Vec<String>,
    },
    /// Documents of different token dtypes pushed into one packer.
    #[error("document {document} has dtype {got}, but the packer holds {expected} tokens")]
    DTypeMismatch {
        /// Index of the document in push order.
        document: u64,
        /// The packer's dtype.
        expected: crate::DType,
        /// The document's dtype.
        got: crate::DType,
    },
    /// A token value that does not fit the output dtype.
    #[error("field `{field}`: value {value} does not fit {dtype}")]
    ValueOutOfRange {
        /// The field.
        field: String,
        /// The value.
        value: i64,
        /// The target dtype.
        dtype: crate::DType,
    },
    /// A checkpoint's carry whose parts contradict each other (edited by hand, or not a
    /// checkpoint of this version).
    #[error("checkpoint carry is inconsistent: {reason}")]
    InvalidCarry {
        /// What does not add up.
        reason: String,
    },
    /// A checkpoint's carry of another kind of sink than the one restoring it.
    #[error("cannot restore {got} into {expected}")]
    CarryMismatch {
        /// What the sink restores.
        expected: &'static str,
        /// What the checkpoint holds.
        got: &'static str,
    },
}
