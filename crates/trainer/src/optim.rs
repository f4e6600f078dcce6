//! AdamW with decay groups, a learning-rate schedule measured in tokens, and gradient
//! clipping by global norm that never waits for the device.
//!
//! tch's own optimizer hides its moment buffers (so a checkpoint cannot hold them) and its
//! `clip_grad_norm` reads the norm back to the host every step. This one keeps every piece of
//! state as a tensor it owns, and clips with a device-side coefficient.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn::VarStore};

use crate::error::{Result, TrainerError};

/// Learning rate against tokens seen: linear warmup, then cosine decay to `min_lr`.
///
/// Measured in tokens, not steps: under sequence length warmup a step early in training
/// carries far fewer tokens than a late one, so a step-based schedule would decay too early.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The rate at the end of warmup.
    pub peak_lr: f64,
    /// The rate at `total_tokens` and after.
    pub min_lr: f64,
    /// Tokens of linear warmup from 0.
    pub warmup_tokens: u64,
    /// Tokens at which the cosine reaches `min_lr`.
    pub total_tokens: u64,
}

impl LrSchedule {
    /// The rate after `tokens` tokens.
    pub fn at(&self, tokens: u64) -> f64 {
        if tokens < self.warmup_tokens {
            return self.peak_lr * (tokens + 1) as f64 / self.warmup_tokens as f64;
        }
        if tokens >= self.total_tokens {
            return self.min_lr;
        }
        let span = (self.total_tokens - self.warmup_tokens).max(1) as f64;
        let progress = (tokens - self.warmup_tokens) as f64 / span;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_lr + (self.peak_lr - self.min_lr) * cosine
    }
}

/// AdamW's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay, applied only to matrices (embeddings and linear weights); biases
    /// and layer-norm gains are not decayed.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

struct Parameter {
    name: String,
    value: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    decay: bool,
}

/// AdamW over every trainable variable of a [`VarStore`].
pub struct AdamW {
    config: AdamWConfig,
    parameters: Vec<Parameter>,
    steps: u64,
}

impl AdamW {
    /// Tracks the store's trainable variables (in name order, so that a checkpoint maps back).
    pub fn new(store: &VarStore, config: AdamWConfig) -> Self {
        let variables: BTreeMap<String, Tensor> = store.variables().into_iter().collect();
        let parameters = variables
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .map(|(name, value)| Parameter {
                decay: value.dim() >= 2,
                exp_avg: value.zeros_like(),
                exp_avg_sq: value.zeros_like(),
                name,
                value,
            })
            .collect();
        Self {
            config,
            parameters,
            steps: 0,
        }
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Names of the decayed and the undecayed parameters.
    pub fn groups(&self) -> (Vec<&str>, Vec<&str>) {
        let (decay, plain): (Vec<_>, Vec<_>) = self.parameters.iter().partition(|p| p.decay);
        (
            decay.iter().map(|p| p.name.as_str()).collect(),
            plain.iter().map(|p| p.name.as_str()).collect(),
        )
    }

    /// Zeroes every gradient in place (the buffers stay allocated, which is what the warm pass
    /// wants the allocator to keep).
    pub fn zero_grad(&mut self) {
        for p in &self.parameters {
            let mut grad = p.value.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
    }

    /// Scales the gradients so that their global L2 norm is at most `max_norm`. Returns the
    /// norm before clipping as a device scalar: nothing here waits for the device, so the
    /// caller decides when (if ever) to read it.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Option<Tensor> {
        tch::no_grad(|| {
            let norms: Vec<Tensor> = self
                .parameters
                .iter()
                .map(|p| p.value.grad())
                .filter(Tensor::defined)
                .map(|g| g.to_kind(Kind::Float).norm())
                .collect();
            if norms.is_empty() {
                return None;
            }
            let total = Tensor::stack(&norms, 0).norm();
            let coefficient = (max_norm / (&total + 1e-6)).clamp_max(1.0);
            for p in &self.parameters {
                let mut grad = p.value.grad();
                if grad.defined() {
                    let _ = grad.g_mul_(&coefficient);
                }
            }
            Some(total)
        })
    }

    /// One AdamW update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let t = self.steps as i32;
        let bias1 = 1.0 - beta1.powi(t);
        let bias2 = 1.0 - beta2.powi(t);
        tch::no_grad(|| {
            for p in &mut self.parameters {
                let grad = p.value.grad();
                if !grad.defined() {
                    continue;
                }
                if p.decay && weight_decay > 0.0 {
                    let _ = p.value.g_mul_scalar_(1.0 - lr * weight_decay);
                }
                let _ = p.exp_avg.lerp_(&grad, 1.0 - beta1);
                let _ = p.exp_avg_sq.g_mul_scalar_(beta2);
                let _ = p.exp_avg_sq.addcmul_(&(&grad * (1.0 - beta2)), &grad);
                let denominator = (&p.exp_avg_sq / bias2).sqrt() + eps;
                let _ = p
                    .value
                    .addcdiv_(&(&p.exp_avg * (-lr / bias1)), &denominator);
            }
        });
    }

    /// The moment buffers, named for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.parameters.len());
        for p in &self.parameters {
            out.push((format!("exp_avg.{}", p.name), p.exp_avg.shallow_clone()));
            out.push((
                format!("exp_avg_sq.{}", p.name),
                p.exp_avg_sq.shallow_clone(),
            ));
        }
        out
    }

    /// Restores moment buffers and the step count written by [`AdamW::state_tensors`].
    pub fn load_state(
        &mut self,
        tensors: Vec<(String, Tensor)>,
        steps: u64,
        path: &str,
    ) -> Result<()> {
        let mut by_name: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        for p in &mut self.parameters {
            for (prefix, target) in [
                ("exp_avg", &mut p.exp_avg),
                ("exp_avg_sq", &mut p.exp_avg_sq),
            ] {
                let key = format!("{prefix}.{}", p.name);
                let Some(saved) = by_name.remove(&key) else {
                    return Err(TrainerError::Checkpoint {
                        path: path.into(),
                        reason: format!("no tensor `{key}`"),
                    });
                };
                if saved.size() != target.size() {
                    return Err(TrainerError::Checkpoint {
                        path: path.into(),
                        reason: format!(
                            "`{key}` has shape {:?}, the model needs {:?}",
                            saved.size(),
                            target.size()
                        ),
                    });
                }
                tch::no_grad(|| target.copy_(&saved));
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, nn};

    #[test]
    fn lr_warms_up_then_decays_to_min() {
        let s = LrSchedule {
            peak_lr: 1e-3,
            min_lr: 1e-4,
            warmup_tokens: 1000,
            total_tokens: 11_000,
        };
        assert!(s.at(0) < s.at(500));
        assert!((s.at(999) - 1e-3).abs() < 1e-12);
        assert!((s.at(1000) - 1e-3).abs() < 1e-12);
        assert!((s.at(6000) - 5.5e-4).abs() < 1e-9);
        assert!((s.at(11_000) - 1e-4).abs() < 1e-12);
        assert!((s.at(50_000) - 1e-4).abs() < 1e-12);
        let mut last = f64::INFINITY;
        for tokens in (1000..11_000).step_by(250) {
            assert!(s.at(tokens) <= last);
            last = s.at(tokens);
        }
    }

    proptest::proptest! {
        #[test]
        fn lr_stays_within_bounds_and_only_falls_after_warmup(
            peak in 1e-5f64..1e-1,
            min_fraction in 0.0f64..1.0,
            warmup in 1u64..10_000,
            span in 1u64..1_000_000,
            a in 0u64..2_000_000,
            b in 0u64..2_000_000,
        ) {
            let s = LrSchedule {
                peak_lr: peak,
                min_lr: peak * min_fraction,
                warmup_tokens: warmup,
                total_tokens: warmup + span,
            };
            let (lo, hi) = (a.min(b), a.max(b));
            for t in [lo, hi] {
                let lr = s.at(t);
                proptest::prop_assert!(lr > 0.0 && lr <= peak * (1.0 + 1e-12), "{lr}");
                if t >= warmup {
                    proptest::prop_assert!(lr >= s.min_lr * (1.0 - 1e-12));
                }
            }
            if lo >= warmup {
                proptest::prop_assert!(s.at(hi) <= s.at(lo) * (1.0 + 1e-12));
            } else if hi < warmup {
                proptest::prop_assert!(s.at(hi) >= s.at(lo));
            }
        }
    }

    #[test]
    fn matches_the_closed_form_on_one_step() {
        // With a fresh state, AdamW's first step moves each weight by lr * sign(grad) (up to
        // eps), after decoupled decay.
        let store = nn::VarStore::new(Device::Cpu);
        let w = store.root().var("w", &[2, 2], nn::Init::Const(1.0));
        let b = store.root().var("b", &[2], nn::Init::Const(1.0));
        let mut opt = AdamW::new(&store, AdamWConfig::default());
        let loss = (&w * 3.0).sum(Kind::Float) - b.sum(Kind::Float);
        loss.backward();
        opt.step(0.01);
        let w_after: Vec<f64> = Vec::try_from(w.flatten(0, -1).to_kind(Kind::Double)).unwrap();
        let b_after: Vec<f64> = Vec::try_from(b.to_kind(Kind::Double)).unwrap();
        for v in w_after {
            assert!((v - (1.0 * (1.0 - 0.01 * 0.1) - 0.01)).abs() < 1e-6, "{v}");
        }
        for v in b_after {
            assert!((v - 1.01).abs() < 1e-6, "{v}");
        }
        assert_eq!(opt.groups(), (vec!["w"], vec!["b"]));
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let store = nn::VarStore::new(Device::Cpu);
        let w = store.root().var("w", &[3], nn::Init::Const(0.0));
        let mut opt = AdamW::new(&store, AdamWConfig::default());
        let target = Tensor::from_slice(&[30.0f32, 40.0, 0.0]);
        (&w * &target).sum(Kind::Float).backward();
        let before = opt.clip_grad_norm(1.0).unwrap();
        assert!((before.double_value(&[]) - 50.0).abs() < 1e-3);
        let after = w.grad().norm().double_value(&[]);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
        // Below the limit nothing changes.
        let again = opt.clip_grad_norm(10.0).unwrap();
        assert!((again.double_value(&[]) - 1.0).abs() < 1e-4);
        assert!((w.grad().norm().double_value(&[]) - 1.0).abs() < 1e-4);
    }
}
