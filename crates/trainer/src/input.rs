//! Loader batches to model inputs: one bulk copy per field, never token by token.

use seqwarm_batcher::{Batch, DType, IGNORE_INDEX, Tensor as TokenTensor, fields};
use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainerError};

/// What the model takes for one step.
#[derive(Debug)]
pub struct ModelInput {
    /// Token ids (rows, seq_len), the loader's integer kind.
    pub input_ids: Tensor,
    /// Targets aligned with `input_ids` (the model shifts them); -100 is ignored.
    pub labels: Tensor,
    /// Positions restarting per document, when the loader packed documents.
    pub position_ids: Option<Tensor>,
    /// Which document of its row each token belongs to, when the loader packed documents:
    /// attention is then masked so that documents do not see each other.
    pub segment_ids: Option<Tensor>,
}

impl ModelInput {
    /// Rows and sequence length.
    pub fn shape(&self) -> (i64, i64) {
        let size = self.input_ids.size();
        (size[0], size[1])
    }

    /// The same input on `device` (a no-op when already there); `step` names it in errors.
    pub fn to_device(&self, step: u64, device: Device) -> Result<ModelInput> {
        let moved = |t: &Tensor, field: &str| {
            t.f_to_device(device).map_err(|e| TrainerError::Batch {
                step,
                field: field.into(),
                reason: format!("cannot move to {device:?}: {e}"),
            })
        };
        Ok(ModelInput {
            input_ids: moved(&self.input_ids, fields::INPUT_IDS)?,
            labels: moved(&self.labels, fields::LABELS)?,
            position_ids: match &self.position_ids {
                Some(p) => Some(moved(p, fields::POSITION_IDS)?),
                None => None,
            },
            segment_ids: match &self.segment_ids {
                Some(p) => Some(moved(p, fields::SEGMENT_IDS)?),
                None => None,
            },
        })
    }
}

/// The libtorch kind for a loader dtype.
pub fn kind_of(dtype: DType) -> Kind {
    match dtype {
        DType::I32 => Kind::Int,
        DType::I64 => Kind::Int64,
    }
}

fn field_tensor(step: u64, name: &str, tensor: &TokenTensor, device: Device) -> Result<Tensor> {
    let bad = |reason: String| TrainerError::Batch {
        step,
        field: name.to_string(),
        reason,
    };
    let Some(cols) = tensor.cols() else {
        return Err(bad("expected a (rows, seq_len) matrix, got a vector".into()));
    };
    // A truncated batch is a strided view; its contiguous copy is one pass over the kept
    // bytes, and a contiguous batch hands over its buffer as is.
    let bytes = tensor.to_contiguous_bytes();
    let shape = [tensor.rows() as i64, cols as i64];
    Tensor::f_from_data_size(&bytes, &shape, kind_of(tensor.dtype()))
        .and_then(|t| t.f_to_device(device))
        .map_err(|e| bad(format!("cannot become a {shape:?} tensor: {e}")))
}

/// Converts a loader batch for the model on `device`. `labels` come from the batch when it has
/// them (packing masks document boundaries), else from `input_ids`; positions where
/// `attention_mask` is 0 (padding) are ignored by the loss.
pub fn batch_to_input(step: u64, batch: &Batch, device: Device) -> Result<ModelInput> {
    let Some(ids) = batch.input_ids() else {
        return Err(TrainerError::Batch {
            step,
            field: fields::INPUT_IDS.into(),
            reason: "the batch has no token ids".into(),
        });
    };
    let input_ids = field_tensor(step, fields::INPUT_IDS, ids, device)?;
    let mut labels = match batch.get(fields::LABELS) {
        Some(labels) => field_tensor(step, fields::LABELS, labels, device)?,
        None => input_ids.shallow_clone(),
    };
    if let Some(mask) = batch.get(fields::ATTENTION_MASK) {
        let mask = field_tensor(step, fields::ATTENTION_MASK, mask, device)?;
        labels = labels
            .f_masked_fill(&mask.eq(0), IGNORE_INDEX)
            .map_err(|e| TrainerError::Batch {
                step,
                field: fields::ATTENTION_MASK.into(),
                reason: format!("does not match input_ids: {e}"),
            })?;
    }
    let position_ids = match batch.get(fields::POSITION_IDS) {
        Some(p) => Some(field_tensor(step, fields::POSITION_IDS, p, device)?),
        None => None,
    };
    let segment_ids = match batch.get(fields::SEGMENT_IDS) {
        Some(p) => Some(field_tensor(step, fields::SEGMENT_IDS, p, device)?),
        None => None,
    };
    Ok(ModelInput {
        input_ids,
        labels,
        position_ids,
        segment_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use seqwarm_batcher::Cut;

    #[test]
    fn fields_arrive_with_their_values_and_shape() {
        let batch = Batch::from_input_ids::<i32>((0..12).collect(), 3, 4).unwrap();
        let input = batch_to_input(0, &batch, Device::Cpu).unwrap();
        assert_eq!(input.shape(), (3, 4));
        assert_eq!(input.input_ids.kind(), Kind::Int);
        let values: Vec<i64> =
            Vec::try_from(input.input_ids.flatten(0, -1).to_kind(Kind::Int64)).unwrap();
        assert_eq!(values, (0..12).collect::<Vec<i64>>());
        assert!(input.position_ids.is_none());
    }

    #[test]
    fn a_truncated_view_is_copied_row_by_row() {
        let batch = Batch::from_input_ids::<i64>((0..12).collect(), 2, 6).unwrap();
        let cut = batch
            .set_sequence_length(
                4,
                Cut::Truncate {
                    preserve_end_of_sequence: false,
                },
            )
            .unwrap();
        let input = batch_to_input(7, &cut, Device::Cpu).unwrap();
        let values: Vec<i64> = Vec::try_from(input.input_ids.flatten(0, -1)).unwrap();
        assert_eq!(values, vec![0, 1, 2, 3, 6, 7, 8, 9]);
    }

    #[test]
    fn padding_is_ignored_by_the_loss() {
        let batch = Batch::from_input_ids::<i32>(vec![5, 6, 7, 0], 1, 4)
            .unwrap()
            .with_field(
                fields::ATTENTION_MASK,
                TokenTensor::from_vec::<i32>(vec![1, 1, 1, 0], 1, 4).unwrap(),
            )
            .unwrap();
        let input = batch_to_input(0, &batch, Device::Cpu).unwrap();
        let labels: Vec<i64> =
            Vec::try_from(input.labels.flatten(0, -1).to_kind(Kind::Int64)).unwrap();
        assert_eq!(labels, vec![5, 6, 7, -100]);
    }
}
