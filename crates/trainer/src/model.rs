//! A GPT: token embeddings, pre-norm transformer blocks with causal attention through
//! `scaled_dot_product_attention`, a tied output head, and learned positions or ALiBi.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init, LayerNorm, Linear};
use tch::{Device, Kind, Tensor};

use crate::error::{Result, TorchContext, TrainerError};

/// How the model knows where a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// A learned embedding per position up to `max_seq_len` (GPT-2).
    #[default]
    Learned,
    /// Attention with Linear Biases (Press et al. 2022): no position embedding, a per-head
    /// distance penalty on the attention scores. It composes with sequence length warmup,
    /// since a model trained short still extrapolates to longer sequences.
    Alibi,
}

/// The model's shape. Build with [`GptConfig::new`] and the `with_*` setters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Vocabulary size (token ids must be below it).
    pub vocab_size: i64,
    /// Transformer blocks.
    pub layers: i64,
    /// Attention heads per block.
    pub heads: i64,
    /// Model width (embedding size); a multiple of `heads`.
    pub width: i64,
    /// The longest sequence the model accepts (the schedule's maximum).
    pub max_seq_len: i64,
    /// Position scheme.
    pub positions: Positions,
}

impl GptConfig {
    /// A small model (4 layers, 4 heads, width 128) for `vocab_size` and `max_seq_len`.
    pub fn new(vocab_size: i64, max_seq_len: i64) -> Self {
        Self {
            vocab_size,
            layers: 4,
            heads: 4,
            width: 128,
            max_seq_len,
            positions: Positions::Learned,
        }
    }

    /// Sets the number of blocks.
    #[must_use]
    pub fn with_layers(mut self, layers: i64) -> Self {
        self.layers = layers;
        self
    }

    /// Sets the number of attention heads.
    #[must_use]
    pub fn with_heads(mut self, heads: i64) -> Self {
        self.heads = heads;
        self
    }

    /// Sets the model width.
    #[must_use]
    pub fn with_width(mut self, width: i64) -> Self {
        self.width = width;
        self
    }

    /// Sets the position scheme.
    #[must_use]
    pub fn with_positions(mut self, positions: Positions) -> Self {
        self.positions = positions;
        self
    }

    /// Checks that the shape can be built.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("layers", self.layers),
            ("heads", self.heads),
            ("width", self.width),
            ("max_seq_len", self.max_seq_len),
        ];
        for (field, value) in positive {
            if value <= 0 {
                return Err(TrainerError::Config {
                    field,
                    reason: format!("must be positive, got {value}"),
                });
            }
        }
        if self.width % self.heads != 0 {
            return Err(TrainerError::Config {
                field: "width",
                reason: format!(
                    "width {} is not a multiple of heads {}",
                    self.width, self.heads
                ),
            });
        }
        Ok(())
    }

    /// Trainable parameters of this shape.
    pub fn parameter_count(&self) -> i64 {
        let w = self.width;
        let block =
            2 * 2 * w + (3 * w * w + 3 * w) + (w * w + w) + (4 * w * w + 4 * w) + (4 * w * w + w);
        let positions = match self.positions {
            Positions::Learned => self.max_seq_len * w,
            Positions::Alibi => 0,
        };
        self.vocab_size * w + positions + self.layers * block + 2 * w
    }
}

struct Block {
    ln_1: LayerNorm,
    attn_qkv: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    mlp_fc: Linear,
    mlp_proj: Linear,
}

/// The GPT. Its parameters live in the [`nn::VarStore`] it was built in.
pub struct Gpt {
    config: GptConfig,
    wte: Tensor,
    wpe: Option<Tensor>,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    alibi_slopes: Option<Tensor>,
}

fn linear(path: &nn::Path, inputs: i64, outputs: i64, stdev: f64) -> Linear {
    nn::linear(
        path,
        inputs,
        outputs,
        nn::LinearConfig {
            ws_init: Init::Randn { mean: 0.0, stdev },
            bs_init: Some(Init::Const(0.0)),
            bias: true,
        },
    )
}

/// ALiBi's head slopes: a geometric sequence starting at 2^(-8/n) for n heads, with the
/// paper's interleaving when n is not a power of two.
pub fn alibi_slopes(heads: i64) -> Vec<f64> {
    fn power_of_two(n: i64) -> Vec<f64> {
        let start = 2f64.powf(-8.0 / n as f64);
        (0..n).map(|i| start.powi(i as i32 + 1)).collect()
    }
    let n = heads.max(1);
    let closest = 1i64 << (63 - n.leading_zeros());
    if closest == n {
        return power_of_two(n);
    }
    let mut slopes = power_of_two(closest);
    let extra = power_of_two(2 * closest);
    slopes.extend(extra.iter().step_by(2).take((n - closest) as usize));
    slopes
}

impl Gpt {
    /// Creates the model's parameters under `path`, GPT-2's initialization (normal with
    /// std 0.02, residual projections scaled by 1/sqrt(2 * layers)).
    pub fn new(path: &nn::Path, config: &GptConfig) -> Result<Self> {
        config.validate()?;
        let w = config.width;
        let residual_std = 0.02 / (2.0 * config.layers as f64).sqrt();
        let wte = path.var(
            "wte",
            &[config.vocab_size, w],
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        );
        let wpe = (config.positions == Positions::Learned).then(|| {
            path.var(
                "wpe",
                &[config.max_seq_len, w],
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
            )
        });
        let blocks = (0..config.layers)
            .map(|i| {
                let p = path / "h" / i;
                Block {
                    ln_1: nn::layer_norm(&p / "ln_1", vec![w], nn::LayerNormConfig::default()),
                    attn_qkv: linear(&(&p / "attn_qkv"), w, 3 * w, 0.02),
                    attn_proj: linear(&(&p / "attn_proj"), w, w, residual_std),
                    ln_2: nn::layer_norm(&p / "ln_2", vec![w], nn::LayerNormConfig::default()),
                    mlp_fc: linear(&(&p / "mlp_fc"), w, 4 * w, 0.02),
                    mlp_proj: linear(&(&p / "mlp_proj"), 4 * w, w, residual_std),
                }
            })
            .collect();
        let ln_f = nn::layer_norm(path / "ln_f", vec![w], nn::LayerNormConfig::default());
        let alibi_slopes = (config.positions == Positions::Alibi).then(|| {
            Tensor::from_slice(&alibi_slopes(config.heads))
                .to_kind(Kind::Float)
                .to_device(path.device())
        });
        Ok(Self {
            config: config.clone(),
            wte,
            wpe,
            blocks,
            ln_f,
            alibi_slopes,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &GptConfig {
        &self.config
    }

    /// The additive attention bias for ALiBi at length `t`: `-slope * distance` to earlier
    /// positions, `-inf` to later ones (which also makes it causal). Shape (1, heads, t, t).
    fn alibi_bias(slopes: &Tensor, t: i64, device: Device) -> Result<Tensor> {
        let positions = Tensor::arange(t, (Kind::Float, device));
        // relative[i][j] = j - i: zero on the diagonal, negative for the past.
        let relative = positions.unsqueeze(0) - positions.unsqueeze(1);
        let future = relative.gt(0.0);
        let bias = slopes.view([-1, 1, 1]) * relative.unsqueeze(0);
        bias.f_masked_fill(&future.unsqueeze(0), f64::NEG_INFINITY)
            .and_then(|b| b.f_unsqueeze(0))
            .context(|| format!("building the ALiBi bias at length {t}"))
    }

    /// Logits (rows, t, vocab) for token ids (rows, t), any integer kind. `position_ids`,
    /// when given (document packing restarts positions per document), replaces 0..t for
    /// learned positions; ALiBi uses distances within the row.
    // q, k, v, x, h, t: the names the literature uses. `x = x + y`, never `x += y`: tch's
    // `+=` is an in-place add, which overwrites what autograd saved for the backward pass.
    #[allow(clippy::many_single_char_names, clippy::assign_op_pattern)]
    pub fn forward(&self, input_ids: &Tensor, position_ids: Option<&Tensor>) -> Result<Tensor> {
        self.forward_segments(input_ids, position_ids, None)
    }

    /// [`Gpt::forward`] for packed rows: with `segment_ids` (rows, t), a token attends only to
    /// earlier tokens of its own document, so documents packed into one row do not see each
    /// other.
    #[allow(clippy::many_single_char_names, clippy::assign_op_pattern)]
    pub fn forward_segments(
        &self,
        input_ids: &Tensor,
        position_ids: Option<&Tensor>,
        segment_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (rows, t) = input_ids
            .size2()
            .context(|| "input_ids must be (rows, seq_len)".into())?;
        if t > self.config.max_seq_len {
            return Err(TrainerError::Config {
                field: "max_seq_len",
                reason: format!(
                    "a batch of length {t} exceeds the model's maximum {}",
                    self.config.max_seq_len
                ),
            });
        }
        let device = self.wte.device();
        let mut x = Tensor::f_embedding(&self.wte, input_ids, -1, false, false).context(|| {
            format!(
                "embedding token ids of a {rows}x{t} batch (an id beyond the vocabulary of {}?)",
                self.config.vocab_size
            )
        })?;
        if let Some(wpe) = &self.wpe {
            let positions = match position_ids {
                Some(p) => p.shallow_clone(),
                None => Tensor::arange(t, (Kind::Int64, device)).unsqueeze(0),
            };
            let pos = Tensor::f_embedding(wpe, &positions, -1, false, false)
                .context(|| "embedding position ids".into())?;
            x = x + pos;
        }
        let mut bias = match &self.alibi_slopes {
            Some(slopes) => Some(Self::alibi_bias(slopes, t, device)?),
            None => None,
        };
        if let Some(segments) = segment_ids {
            // allowed[r][i][j]: same document and j <= i. The diagonal is always allowed, so
            // no row of the attention is empty (padding forms its own segment).
            let same = segments
                .f_unsqueeze(2)
                .and_then(|a| a.f_eq_tensor(&segments.unsqueeze(1)))
                .context(|| format!("segment_ids must be ({rows}, {t})"))?;
            let causal = Tensor::ones([t, t], (Kind::Bool, device)).tril(0);
            let allowed = (same.logical_and(&causal)).unsqueeze(1);
            bias = Some(match bias {
                // ALiBi's additive bias, with -inf across documents.
                Some(b) => b
                    .f_masked_fill(&allowed.logical_not(), f64::NEG_INFINITY)
                    .context(|| "masking the ALiBi bias by document".into())?,
                None => allowed,
            });
        }
        let heads = self.config.heads;
        let head_dim = self.config.width / heads;
        for block in &self.blocks {
            let h = x.apply(&block.ln_1);
            let qkv = h
                .apply(&block.attn_qkv)
                .view([rows, t, 3, heads, head_dim])
                .permute([2, 0, 3, 1, 4]);
            let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
            // With no explicit bias the kernel's own causal path is used (flash/memory-
            // efficient on CUDA); ALiBi's bias and the document mask are causal by
            // construction.
            let attended = Tensor::f_scaled_dot_product_attention(
                &q,
                &k,
                &v,
                bias.as_ref(),
                0.0,
                bias.is_none(),
                None,
                false,
            )
            .context(|| format!("attention at length {t}"))?;
            let attended = attended
                .transpose(1, 2)
                .contiguous()
                .view([rows, t, self.config.width]);
            x = x + attended.apply(&block.attn_proj);
            let h = x.apply(&block.ln_2);
            let h = h.apply(&block.mlp_fc).gelu("tanh").apply(&block.mlp_proj);
            x = x + h;
        }
        let x = x.apply(&self.ln_f);
        // Tied output head: logits against the token embedding.
        x.f_matmul(&self.wte.tr())
            .context(|| "output projection".into())
    }

    /// Mean next-token cross entropy: position i predicts `labels[i + 1]`; labels of -100
    /// (padding, document boundaries when packed) are ignored.
    pub fn loss(
        &self,
        input_ids: &Tensor,
        labels: &Tensor,
        position_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.loss_segments(input_ids, labels, position_ids, None)
    }

    /// [`Gpt::loss`] with document-masked attention for packed rows (see
    /// [`Gpt::forward_segments`]).
    pub fn loss_segments(
        &self,
        input_ids: &Tensor,
        labels: &Tensor,
        position_ids: Option<&Tensor>,
        segment_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        let logits = self.forward_segments(input_ids, position_ids, segment_ids)?;
        let t = logits.size()[1];
        if t < 2 {
            return Err(TrainerError::Config {
                field: "seq_len",
                reason: "next-token loss needs at least 2 positions".into(),
            });
        }
        let vocab = self.config.vocab_size;
        let predicted = logits.narrow(1, 0, t - 1).reshape([-1, vocab]);
        let targets = labels
            .narrow(1, 1, t - 1)
            .reshape([-1])
            .to_kind(Kind::Int64);
        predicted
            .to_kind(Kind::Float)
            .f_cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Mean, -100, 0.0)
            .context(|| "cross entropy".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alibi_slopes_match_the_paper() {
        // Powers of two: 2^(-8/n), 2^(-16/n), ...
        let eight = alibi_slopes(8);
        let expected: Vec<f64> = (1..=8).map(|i| 2f64.powi(-i)).collect();
        assert_eq!(eight.len(), 8);
        for (a, b) in eight.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-12, "{eight:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn alibi_slopes_are_one_per_head_positive_and_at_most_one(heads in 1i64..64) {
            let slopes = alibi_slopes(heads);
            proptest::prop_assert_eq!(slopes.len(), heads as usize);
            proptest::prop_assert!(slopes.iter().all(|&s| s > 0.0 && s < 1.0));
            // All distinct: every head sees distance at its own scale.
            let mut sorted = slopes.clone();
            sorted.sort_by(f64::total_cmp);
            sorted.dedup();
            proptest::prop_assert_eq!(sorted.len(), slopes.len());
        }

        #[test]
        fn parameter_count_matches_the_built_model(
            layers in 1i64..3, heads in 1i64..4, per_head in 1i64..8, vocab in 2i64..50,
            max_len in 1i64..40, alibi in proptest::bool::ANY,
        ) {
            let config = GptConfig::new(vocab, max_len)
                .with_layers(layers)
                .with_heads(heads)
                .with_width(heads * per_head)
                .with_positions(if alibi { Positions::Alibi } else { Positions::Learned });
            let store = nn::VarStore::new(Device::Cpu);
            Gpt::new(&store.root(), &config).unwrap();
            let built: i64 = store.variables().values().map(Tensor::numel).map(|n| n as i64).sum();
            proptest::prop_assert_eq!(built, config.parameter_count());
        }
    }
}
