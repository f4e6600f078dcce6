use proptest::prelude::*;

use crate::{
    Batch, BatchError, Cut, DType, PackStrategy, PackerConfig, RepackerConfig, RowSink, Tensor,
    Tokens, fields,
};

fn ids(values: Vec<i64>, rows: usize, cols: usize) -> Tensor {
    Tensor::from_vec(values, rows, cols).unwrap()
}

/// A batch whose companion fields are functions of `input_ids`, so that any transform that
/// moves tokens without moving their companions is caught.
fn linked_batch(tokens: &[i64], rows: usize, cols: usize) -> Batch {
    let labels: Vec<i64> = tokens.iter().map(|t| t + 1_000_000).collect();
    let types: Vec<i32> = tokens.iter().map(|t| (t % 7) as i32).collect();
    Batch::new()
        .with_field(fields::INPUT_IDS, ids(tokens.to_vec(), rows, cols))
        .unwrap()
        .with_field(fields::LABELS, ids(labels, rows, cols))
        .unwrap()
        .with_field(
            fields::TOKEN_TYPE_IDS,
            Tensor::from_vec(types, rows, cols).unwrap(),
        )
        .unwrap()
}

fn assert_linked(batch: &Batch) {
    let tokens = batch.input_ids().unwrap().to_vec_i64();
    let labels = batch.get(fields::LABELS).unwrap().to_vec_i64();
    let types = batch.get(fields::TOKEN_TYPE_IDS).unwrap().to_vec_i64();
    for i in 0..tokens.len() {
        if labels[i] != crate::IGNORE_INDEX {
            assert_eq!(
                labels[i],
                tokens[i] + 1_000_000,
                "labels moved apart at {i}"
            );
        }
        if batch
            .get(fields::ATTENTION_MASK)
            .is_none_or(|m| m.to_vec_i64()[i] != 0)
        {
            assert_eq!(types[i], tokens[i] % 7, "token_type_ids moved apart at {i}");
        }
    }
}

#[test]
fn truncate_is_a_zero_copy_view() {
    let batch = Batch::from_input_ids((0..64i64).collect(), 4, 16).unwrap();
    let cut = batch
        .set_sequence_length(
            8,
            Cut::Truncate {
                preserve_end_of_sequence: false,
            },
        )
        .unwrap();
    let before = batch.input_ids().unwrap().buffer().as_ptr();
    let after = cut.input_ids().unwrap();
    assert_eq!(after.buffer().as_ptr(), before);
    assert!(!after.is_contiguous());
    assert_eq!(after.to_rows_i64()[1], (16..24).collect::<Vec<_>>());
    assert_eq!(after.contiguous().to_vec_i64().len(), 32);
}

#[test]
fn reshape_of_contiguous_batch_is_zero_copy() {
    let batch = Batch::from_input_ids((0..60i64).collect(), 3, 20).unwrap();
    let out = batch.set_sequence_length(7, Cut::Reshape).unwrap();
    assert_eq!(out.rows(), 8);
    assert_eq!(
        out.input_ids().unwrap().buffer().as_ptr(),
        batch.input_ids().unwrap().buffer().as_ptr()
    );
}

#[test]
fn preserve_end_of_sequence_moves_the_last_real_token() {
    let tokens = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0];
    let mask = vec![1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0];
    let batch = Batch::new()
        .with_field("input_ids", ids(tokens, 2, 6))
        .unwrap()
        .with_field("attention_mask", ids(mask, 2, 6))
        .unwrap();
    let out = batch
        .set_sequence_length(
            3,
            Cut::Truncate {
                preserve_end_of_sequence: true,
            },
        )
        .unwrap();
    assert_eq!(
        out.input_ids().unwrap().to_rows_i64(),
        vec![vec![1, 2, 6], vec![7, 8, 0]]
    );
    // Without attention_mask it is an error, as in Composer.
    let err = Batch::from_input_ids(vec![1i64, 2, 3, 4], 1, 4)
        .unwrap()
        .set_sequence_length(
            2,
            Cut::Truncate {
                preserve_end_of_sequence: true,
            },
        )
        .unwrap_err();
    assert!(matches!(err, BatchError::MissingField { ref field, .. } if field == "attention_mask"));
}

#[test]
fn composer_errors_name_the_field() {
    let batch = Batch::from_input_ids((0..8i64).collect(), 2, 4)
        .unwrap()
        .with_field("class_label", Tensor::vector(vec![3i64, 4]))
        .unwrap();
    let err = batch
        .set_sequence_length(
            2,
            Cut::Truncate {
                preserve_end_of_sequence: false,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("`class_label`"), "{err}");
    let err = batch.set_sequence_length(2, Cut::Reshape).unwrap_err();
    assert!(
        err.to_string().contains("`class_label` has shape [2]"),
        "{err}"
    );
    assert!(matches!(
        batch.set_sequence_length(0, Cut::Reshape),
        Err(BatchError::InvalidLength { len: 0 })
    ));
}

#[test]
fn batch_rejects_inconsistent_fields() {
    let err = Batch::from_input_ids((0..8i64).collect(), 2, 4)
        .unwrap()
        .with_field("labels", ids((0..12).collect(), 3, 4))
        .unwrap_err();
    assert!(matches!(
        err,
        BatchError::RowMismatch {
            rows: 3,
            expected: 2,
            ..
        }
    ));
    let err = Tensor::from_vec((0..7i64).collect(), 2, 4).unwrap_err();
    assert!(matches!(err, BatchError::BufferSize { .. }));
}

#[test]
fn misaligned_bytes_are_copied_into_aligned_storage() {
    let raw: Vec<u8> = (0..17u8).collect();
    let bytes = bytes::Bytes::from(raw).slice(1..17);
    let t = Tensor::from_bytes(bytes, DType::I64, 1, 2).unwrap();
    assert_eq!(t.rows(), 1);
    assert_eq!(t.to_vec_i64().len(), 2);
}

#[test]
fn repacker_rejects_per_sample_fields_and_changed_schemas() {
    let mut r = RepackerConfig::default().build();
    let with_label = Batch::from_input_ids((0..8i64).collect(), 2, 4)
        .unwrap()
        .with_field("class_label", Tensor::vector(vec![1i64, 2]))
        .unwrap();
    assert!(matches!(
        r.push(&with_label),
        Err(BatchError::NotSequenceShaped { .. })
    ));
    r.push(&Batch::from_input_ids((0..8i64).collect(), 2, 4).unwrap())
        .unwrap();
    let other = Batch::from_input_ids((0..8i32).collect(), 2, 4).unwrap();
    assert!(matches!(
        r.push(&other),
        Err(BatchError::FieldsChanged { .. })
    ));
}

#[test]
fn repacker_strips_padding_and_pads_the_final_row() {
    let mut r = RepackerConfig::default().build();
    let batch = Batch::new()
        .with_field("input_ids", ids(vec![1, 2, 0, 3, 4, 5, 0, 6, 0], 3, 3))
        .unwrap()
        .with_field("attention_mask", ids(vec![1, 1, 0, 1, 1, 1, 0, 1, 0], 3, 3))
        .unwrap()
        .with_field(
            "labels",
            ids(vec![1, 2, -100, 3, 4, 5, -100, 6, -100], 3, 3),
        )
        .unwrap();
    let out = r.repack(&batch, 4).unwrap();
    assert_eq!(
        out.input_ids().unwrap().to_rows_i64(),
        vec![vec![1, 2, 3, 4]]
    );
    assert_eq!(r.buffered_tokens(), 2); // 5, then 6 gathered from the left-padded row
    let last = r.finish(4, usize::MAX).unwrap().unwrap();
    assert_eq!(
        last.input_ids().unwrap().to_rows_i64(),
        vec![vec![5, 6, 0, 0]]
    );
    assert_eq!(
        last.get("labels").unwrap().to_rows_i64(),
        vec![vec![5, 6, -100, -100]]
    );
    assert_eq!(
        last.get("attention_mask").unwrap().to_rows_i64(),
        vec![vec![1, 1, 0, 0]]
    );
    assert!(r.finish(4, usize::MAX).unwrap().is_none());
}

#[test]
fn packer_greedy_fills_rows_and_splits_at_boundaries() {
    let mut p = PackerConfig::default().build();
    for doc in [vec![1i64, 2, 3], vec![4, 5, 6, 7], vec![8]] {
        p.push_document(Tokens::new(&Tensor::vector(doc)), None)
            .unwrap();
    }
    let out = p.pop(4, 2).unwrap().unwrap();
    assert_eq!(
        out.input_ids().unwrap().to_rows_i64(),
        vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]]
    );
    assert_eq!(
        out.get("segment_ids").unwrap().to_rows_i64(),
        vec![vec![1, 1, 1, 2], vec![1, 1, 1, 2]]
    );
    assert_eq!(
        out.get("labels").unwrap().to_rows_i64(),
        vec![vec![1, 2, 3, -100], vec![5, 6, 7, -100]]
    );
    assert_eq!(out.cu_seqlens().unwrap(), vec![0, 3, 4, 7, 8]);
    assert_eq!(p.stats().documents_split, 1);
    assert!(p.pop(4, 1).unwrap().is_none());
}

#[test]
fn packer_rejects_mixed_dtypes() {
    let mut p = PackerConfig::default().build();
    p.push_document(Tokens::new(&Tensor::vector(vec![1i32])), None)
        .unwrap();
    assert!(matches!(
        p.push_document(Tokens::new(&Tensor::vector(vec![1i64])), None),
        Err(BatchError::DTypeMismatch { document: 1, .. })
    ));
}

fn padded_batch() -> impl Strategy<Value = (Vec<Vec<i64>>, usize)> {
    (1usize..6, 1usize..12).prop_flat_map(|(rows, cols)| {
        (
            proptest::collection::vec(proptest::collection::vec(1i64..50_000, 0..=cols), rows),
            Just(cols),
        )
    })
}

fn to_batch(rows: &[Vec<i64>], cols: usize, dtype: DType) -> Batch {
    let mut tokens = Vec::new();
    let mut mask = Vec::new();
    for row in rows {
        tokens.extend(row.iter().copied());
        mask.extend(std::iter::repeat_n(1, row.len()));
        tokens.extend(std::iter::repeat_n(0, cols - row.len()));
        mask.extend(std::iter::repeat_n(0, cols - row.len()));
    }
    let make = |v: Vec<i64>| match dtype {
        DType::I64 => Tensor::from_vec(v, rows.len(), cols).unwrap(),
        DType::I32 => {
            Tensor::from_vec(v.iter().map(|&x| x as i32).collect(), rows.len(), cols).unwrap()
        }
    };
    let labels: Vec<i64> = tokens.iter().map(|t| t + 1_000_000).collect();
    let types: Vec<i64> = tokens.iter().map(|t| t % 7).collect();
    Batch::new()
        .with_field("input_ids", make(tokens))
        .unwrap()
        .with_field("attention_mask", make(mask))
        .unwrap()
        .with_field("labels", make(labels))
        .unwrap()
        .with_field("token_type_ids", make(types))
        .unwrap()
}

proptest! {
    #[test]
    fn pop_truncated_equals_pop_then_truncate(
        runs in proptest::collection::vec(1usize..40, 1..8),
        row_len in 1usize..16,
        keep in 1usize..16,
        rows in 1usize..5,
    ) {
        let mut a = RepackerConfig::default().build();
        let mut b = RepackerConfig::default().build();
        let mut next = 0i64;
        for n in runs {
            let tokens: Vec<i64> = (next..next + n as i64).collect();
            next += n as i64;
            let t = Tensor::vector(tokens);
            a.push_tokens(&t, None).unwrap();
            b.push_tokens(&t, None).unwrap();
        }
        let full = a.pop(row_len, rows).unwrap().map(|x| x.set_sequence_length(keep, Cut::Truncate { preserve_end_of_sequence: false }).unwrap());
        let cut = b.pop_truncated(row_len, rows, keep).unwrap();
        prop_assert_eq!(full.map(|x| x.input_ids().unwrap().to_rows_i64()), cut.map(|x| x.input_ids().unwrap().to_rows_i64()));
        prop_assert_eq!(a.buffered_tokens(), b.buffered_tokens());
    }

    #[test]
    fn truncate_and_reshape_keep_fields_together(rows in 1usize..6, cols in 1usize..40, len in 1usize..50, seed in 0i64..1000) {
        let tokens: Vec<i64> = (0..(rows * cols) as i64).map(|i| i * 31 + seed).collect();
        let batch = linked_batch(&tokens, rows, cols);
        for cut in [Cut::Truncate { preserve_end_of_sequence: false }, Cut::Reshape] {
            let out = batch.set_sequence_length(len, cut).unwrap();
            assert_linked(&out);
            let expect_cols = len.min(cols);
            prop_assert_eq!(out.seq_len(), expect_cols);
            let kept = out.input_ids().unwrap().numel();
            match cut {
                Cut::Reshape if len < cols => prop_assert_eq!(kept, rows * cols / len * len),
                _ => prop_assert_eq!(kept, rows * expect_cols),
            }
        }
    }

    #[test]
    fn repacker_is_lossless_at_every_call(
        batches in proptest::collection::vec(padded_batch(), 1..8),
        lens in proptest::collection::vec(1usize..20, 8),
        use_i32 in any::<bool>(),
        strip in any::<bool>(),
    ) {
        let dtype = if use_i32 { DType::I32 } else { DType::I64 };
        let mut r = RepackerConfig::default().with_strip_padding(strip).build();
        let mut expected_stream = Vec::new();
        let mut out_stream = Vec::new();
        let mut tokens_in = 0u64;
        for (i, (rows, cols)) in batches.iter().enumerate() {
            let batch = to_batch(rows, *cols, dtype);
            for row in rows {
                expected_stream.extend(row.iter().copied());
                if !strip {
                    expected_stream.extend(std::iter::repeat_n(0, cols - row.len()));
                }
            }
            tokens_in += if strip { rows.iter().map(Vec::len).sum::<usize>() } else { rows.len() * cols } as u64;
            let len = lens[i];
            let out = r.repack(&batch, len).unwrap();
            if out.rows() > 0 {
                prop_assert_eq!(out.seq_len(), len);
                assert_linked(&out);
            }
            out_stream.extend(out.input_ids().map(Tensor::to_vec_i64).unwrap_or_default());
            prop_assert_eq!(r.tokens_in(), tokens_in);
            prop_assert_eq!(r.tokens_in(), r.tokens_out() + r.buffered_tokens() as u64);
            prop_assert!(r.buffered_tokens() < len);
        }
        let carried = r.buffered_tokens();
        if let Some(last) = r.finish(lens[7], usize::MAX).unwrap() {
            let mask = last.get("attention_mask").unwrap().to_vec_i64();
            let toks = last.input_ids().unwrap().to_vec_i64();
            prop_assert_eq!(toks.len(), carried.div_ceil(lens[7]) * lens[7]);
            // Carried tokens lead the row; everything after them is padding.
            prop_assert!(mask[carried..].iter().all(|&m| m == 0));
            if strip {
                prop_assert!(mask[..carried].iter().all(|&m| m == 1));
            }
            out_stream.extend(toks.into_iter().take(carried));
        }
        prop_assert_eq!(r.buffered_tokens(), 0);
        prop_assert_eq!(r.tokens_out(), tokens_in);
        prop_assert_eq!(out_stream, expected_stream);
    }

    #[test]
    fn packer_is_lossless_and_marks_documents(
        docs in proptest::collection::vec(proptest::collection::vec(1i64..1000, 0..40), 1..40),
        len in 1usize..32,
        window in 1usize..10,
        best_fit in any::<bool>(),
        mask in any::<bool>(),
        cap in proptest::option::of(1usize..5),
    ) {
        let strategy = if best_fit { PackStrategy::BestFitDecreasing { window } } else { PackStrategy::Greedy };
        let mut p = PackerConfig::default()
            .with_strategy(strategy)
            .with_mask_document_boundaries(mask)
            .with_max_segments(cap)
            .build();
        for d in &docs {
            p.push_document(Tokens::new(&Tensor::vector(d.clone())), None).unwrap();
        }
        let mut batches = Vec::new();
        while let Some(b) = p.pop(len, 2).unwrap() {
            batches.push(b);
        }
        batches.extend(p.finish(len, usize::MAX).unwrap());
        let total: usize = docs.iter().map(Vec::len).sum();
        let stats = p.stats();
        prop_assert_eq!(stats.tokens_out, total as u64);
        prop_assert_eq!(p.buffered_tokens(), 0);
        let mut real_tokens = Vec::new();
        for b in &batches {
            prop_assert_eq!(b.seq_len(), len);
            let ids = b.input_ids().unwrap().to_rows_i64();
            let labels = b.get("labels").unwrap().to_rows_i64();
            let pos = b.get("position_ids").unwrap().to_rows_i64();
            let seg = b.get("segment_ids").unwrap().to_rows_i64();
            let att = b.get("attention_mask").unwrap().to_rows_i64();
            // At most `cap` segments per row, so cu_seqlens fits its fixed size, padded with
            // the total (zero-length sequences) and describing every position once.
            if let Some(cap) = cap {
                prop_assert!(seg.iter().all(|row| row.iter().all(|&s| s <= cap as i64)));
            }
            let size = crate::fixed_cu_seqlens_len(ids.len(), len, cap);
            let varlen = b.varlen(Some(size)).unwrap().unwrap();
            let exact = b.cu_seqlens().unwrap();
            prop_assert_eq!(varlen.cu_seqlens.len(), size);
            prop_assert_eq!(&varlen.cu_seqlens[..varlen.count], &exact[..]);
            let total = (ids.len() * len) as i64;
            prop_assert!(varlen.cu_seqlens[varlen.count - 1..].iter().all(|&o| o == total));
            prop_assert!(varlen.max_seqlen >= 1 && varlen.max_seqlen <= len);
            prop_assert_eq!(
                Some(varlen.max_seqlen as i64),
                exact.windows(2).map(|w| w[1] - w[0]).max()
            );
            for r in 0..ids.len() {
                for c in 0..len {
                    if att[r][c] == 0 {
                        prop_assert_eq!(seg[r][c], 0);
                        prop_assert_eq!(labels[r][c], -100);
                        continue;
                    }
                    real_tokens.push(ids[r][c]);
                    let starts = c == 0 || seg[r][c] != seg[r][c - 1];
                    prop_assert_eq!(pos[r][c] == 0, starts);
                    if starts && c > 0 && mask {
                        prop_assert_eq!(labels[r][c], -100);
                    } else {
                        prop_assert_eq!(labels[r][c], ids[r][c]);
                    }
                }
            }
        }
        let mut expected: Vec<i64> = docs.iter().flatten().copied().collect();
        if best_fit {
            // Best fit reorders documents; the multiset of tokens is what must survive.
            expected.sort_unstable();
            real_tokens.sort_unstable();
            let long_docs = docs.iter().filter(|d| d.len() > len).count() as u64;
            prop_assert_eq!(stats.documents_split, long_docs);
        } else if cap.is_none() {
            // Greedy pads only the last row, unless a segment limit closes rows early.
            prop_assert_eq!(stats.padding, (batches.iter().map(Batch::rows).sum::<usize>() * len - total) as u64);
        }
        prop_assert_eq!(real_tokens, expected);
    }

    #[test]
    fn packed_fields_asked_for_are_the_full_packers_and_no_others(
        docs in proptest::collection::vec(proptest::collection::vec(1i64..1000, 0..40), 1..30),
        len in 1usize..32,
        best_fit in any::<bool>(),
        chosen in proptest::collection::vec(any::<bool>(), 4),
        wide in any::<bool>(),
    ) {
        let strategy = if best_fit { PackStrategy::BestFitDecreasing { window: 4 } } else { PackStrategy::Greedy };
        let names = ["attention_mask", "labels", "position_ids", "segment_ids"];
        let asked: Vec<&str> = names.iter().zip(&chosen).filter(|(_, on)| **on).map(|(n, _)| *n).collect();
        let fields = crate::PackFields::from_names(&asked).unwrap();
        let build = |fields| PackerConfig::default().with_strategy(strategy).with_fields(fields).build();
        let (mut full, mut some) = (build(crate::PackFields::ALL), build(fields));
        let tensor = |d: &Vec<i64>| if wide {
            Tensor::vector(d.clone())
        } else {
            Tensor::vector(d.iter().map(|&t| t as i32).collect::<Vec<i32>>())
        };
        let mut pairs = Vec::new();
        for d in &docs {
            full.push_document(Tokens::new(&tensor(d)), None).unwrap();
            some.push_document(Tokens::new(&tensor(d)), None).unwrap();
            while let (Some(a), Some(b)) = (full.pop(len, 2).unwrap(), some.pop(len, 2).unwrap()) {
                pairs.push((a, b));
            }
        }
        while let (Some(a), Some(b)) = (full.finish(len, 3).unwrap(), some.finish(len, 3).unwrap()) {
            pairs.push((a, b));
        }
        prop_assert_eq!(full.buffered_tokens(), 0);
        prop_assert_eq!(some.buffered_tokens(), 0);
        let mut counted = 0usize;
        for (a, b) in &pairs {
            let mut expected = vec!["input_ids"];
            expected.extend(&asked);
            prop_assert_eq!(b.names().collect::<Vec<_>>(), expected);
            for (name, tensor) in b.iter() {
                prop_assert_eq!(tensor, a.get(name).unwrap());
            }
            counted += a.token_count();
        }
        // The packer counts real tokens without a mask: what the full batches' masks say.
        prop_assert_eq!(some.tokens_handed_out(), Some(counted as u64));
        prop_assert_eq!(full.tokens_handed_out(), Some(counted as u64));
    }

    #[test]
    fn documents_pushed_in_their_run_pack_as_pushed_alone_and_share_it(
        docs in proptest::collection::vec(proptest::collection::vec(1i64..1000, 0..40), 1..30),
        len in 1usize..32,
        best_fit in any::<bool>(),
        eos in proptest::option::of(1i64..5),
    ) {
        let strategy = if best_fit { PackStrategy::BestFitDecreasing { window: 4 } } else { PackStrategy::Greedy };
        let build = || PackerConfig::default().with_strategy(strategy).build();
        let (mut alone, mut inside) = (build(), build());
        let flat: Vec<i64> = docs.iter().flatten().copied().collect();
        let run = Tensor::vector(flat);
        let mut start = 0;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for d in &docs {
            alone.push_document(Tokens::new(&Tensor::vector(d.clone())), eos).unwrap();
            inside.push_document_in(Tokens::new(&run), start..start + d.len(), eos).unwrap();
            start += d.len();
            a.extend(alone.pop(len, 2).unwrap());
            b.extend(inside.pop(len, 2).unwrap());
        }
        while let Some(batch) = alone.finish(len, 2).unwrap() {
            a.push(batch);
        }
        while let Some(batch) = inside.finish(len, 2).unwrap() {
            b.push(batch);
        }
        prop_assert_eq!(&a, &b);
        // Greedy batches without EOS and without padding are views of the run (best fit's
        // are when its rows happen to keep document order); with an EOS to append, copies.
        let run_bytes = run.buffer().as_ptr_range();
        for batch in &b {
            let view = run_bytes.contains(&batch.input_ids().unwrap().buffer().as_ptr());
            let full = batch.token_count() == batch.input_ids().unwrap().numel();
            if eos.is_some() || !full {
                prop_assert!(!view);
            } else if !best_fit {
                prop_assert!(view);
            }
        }
        // A span outside the run is an error, not a panic.
        prop_assert!(inside.push_document_in(Tokens::new(&run), start..start + 1, None).is_err());
    }
}

#[test]
fn a_segment_limit_closes_rows_and_bounds_cu_seqlens() {
    let docs = [vec![1i64, 2], vec![3], vec![4, 5], vec![6], vec![7, 8, 9]];
    for strategy in [
        PackStrategy::Greedy,
        PackStrategy::BestFitDecreasing { window: 8 },
    ] {
        let mut p = PackerConfig::default()
            .with_strategy(strategy)
            .with_max_segments(Some(2))
            .build();
        for d in &docs {
            p.push_document(Tokens::new(&Tensor::vector(d.clone())), None)
                .unwrap();
        }
        let batch = p.finish(8, usize::MAX).unwrap().unwrap();
        let segments = batch.get("segment_ids").unwrap().to_rows_i64();
        // 9 tokens fit two rows of 8, but at 2 documents per row they take three.
        assert_eq!(segments.len(), 3, "{strategy:?}: {segments:?}");
        assert!(segments.iter().flatten().all(|&s| s <= 2));
        let size = crate::fixed_cu_seqlens_len(3, 8, Some(2));
        assert_eq!(size, 10);
        let varlen = batch.varlen(Some(size)).unwrap().unwrap();
        assert_eq!(varlen.cu_seqlens.len(), 10);
        assert_eq!(*varlen.cu_seqlens.last().unwrap(), 24);
        // Without the limit the same fixed size would not hold the runs of a tighter pack.
        assert!(matches!(
            batch.varlen(Some(2)),
            Err(BatchError::TooManySegments { size: 2, .. })
        ));
    }
}

/// Every sink behind the trait, built fresh.
fn sinks(window: usize) -> Vec<Box<dyn FnMut() -> AnySink>> {
    vec![
        Box::new(|| AnySink::Rows(RepackerConfig::default().build())),
        Box::new(|| AnySink::Pack(PackerConfig::default().build())),
        Box::new(move || {
            AnySink::Pack(
                PackerConfig::default()
                    .with_strategy(PackStrategy::BestFitDecreasing { window })
                    .build(),
            )
        }),
        // With a segment limit: rows close early, and the carry keeps them so.
        Box::new(|| AnySink::Pack(PackerConfig::default().with_max_segments(Some(2)).build())),
        Box::new(move || {
            AnySink::Pack(
                PackerConfig::default()
                    .with_strategy(PackStrategy::BestFitDecreasing { window })
                    .with_max_segments(Some(2))
                    .build(),
            )
        }),
    ]
}

#[test]
fn a_carry_whose_ready_rows_exceed_the_segment_limit_is_refused() {
    let mut unlimited = PackerConfig::default()
        .with_strategy(PackStrategy::BestFitDecreasing { window: 8 })
        .build();
    for d in [vec![1i64], vec![2], vec![3], vec![4]] {
        unlimited
            .push_document(Tokens::new(&Tensor::vector(d)), None)
            .unwrap();
    }
    // The input ends, so best fit packs the four one-token documents into one row of 8; two
    // rows are asked for, so that row waits in the carry.
    unlimited.end_of_input();
    assert!(unlimited.pop(8, 2).unwrap().is_none());
    let carry = unlimited.carry();
    let mut limited = PackerConfig::default().with_max_segments(Some(2)).build();
    let err = limited.restore(&carry).unwrap_err();
    assert!(err.to_string().contains("allows 2 per row"), "{err}");
}

/// The two sinks, for tests that drive them through [`RowSink`] alone.
enum AnySink {
    Rows(crate::Repacker),
    Pack(crate::DocumentPacker),
}

impl AnySink {
    fn pop(&mut self, len: usize, rows: usize) -> Option<Batch> {
        match self {
            Self::Rows(s) => RowSink::pop(s, len, rows).unwrap(),
            Self::Pack(s) => RowSink::pop(s, len, rows).unwrap(),
        }
    }
    fn can_pop(&self, len: usize, rows: usize) -> bool {
        match self {
            Self::Rows(s) => RowSink::can_pop(s, len, rows),
            Self::Pack(s) => RowSink::can_pop(s, len, rows),
        }
    }
    fn push(&mut self, doc: &[i64], eos: Option<i64>) {
        let t = Tensor::vector(doc.to_vec());
        match self {
            Self::Rows(s) => RowSink::push_document(s, Tokens::new(&t), eos).unwrap(),
            Self::Pack(s) => RowSink::push_document(s, Tokens::new(&t), eos).unwrap(),
        }
    }
    fn buffered(&self) -> usize {
        match self {
            Self::Rows(s) => RowSink::buffered_tokens(s),
            Self::Pack(s) => RowSink::buffered_tokens(s),
        }
    }
    /// A fresh sink of the same kind holding this one's carry (through JSON, as a checkpoint).
    fn reborn(&self, fresh: &mut dyn FnMut() -> AnySink) -> AnySink {
        let mut other = fresh();
        match (self, &mut other) {
            (Self::Rows(a), Self::Rows(b)) => {
                let json = serde_json::to_string(&RowSink::carry(a)).unwrap();
                RowSink::restore(b, &serde_json::from_str(&json).unwrap()).unwrap();
            }
            (Self::Pack(a), Self::Pack(b)) => {
                let json = serde_json::to_string(&RowSink::carry(a)).unwrap();
                RowSink::restore(b, &serde_json::from_str(&json).unwrap()).unwrap();
            }
            _ => unreachable!("same constructor"),
        }
        other
    }
    fn finish_all(&mut self, len: usize, rows: usize) -> Vec<Batch> {
        let mut out = Vec::new();
        loop {
            let next = match self {
                Self::Rows(s) => RowSink::finish(s, len, rows).unwrap(),
                Self::Pack(s) => RowSink::finish(s, len, rows).unwrap(),
            };
            match next {
                Some(b) => {
                    assert!(
                        b.rows() <= rows,
                        "finish gave {} rows, asked for {rows}",
                        b.rows()
                    );
                    out.push(b);
                }
                None => return out,
            }
        }
    }
}

proptest! {
    #[test]
    fn every_sink_keeps_the_row_sink_contract(
        docs in proptest::collection::vec(proptest::collection::vec(0i64..1000, 0..30), 1..30),
        lens in proptest::collection::vec(1usize..24, 1..8),
        rows in 1usize..4,
        window in 1usize..6,
        eos in proptest::option::of(1000i64..1001),
        cut in 0usize..30,
    ) {
        // One step of the drive: push document `i`, then pop when progress is possible (and
        // check that a pop without it takes nothing).
        let step = |sink: &mut AnySink, i: usize, out: &mut Vec<Batch>| -> Result<(), TestCaseError> {
            sink.push(&docs[i], eos);
            let len = lens[i % lens.len()];
            if sink.can_pop(len, rows) {
                match sink.pop(len, rows) {
                    Some(batch) => out.push(batch),
                    // Only best fit may come up short after packing a window.
                    None => prop_assert!(matches!(sink, AnySink::Pack(_))),
                }
            } else {
                let held = sink.buffered();
                prop_assert!(sink.pop(len, rows).is_none());
                prop_assert_eq!(sink.buffered(), held);
            }
            Ok(())
        };
        let cut = cut.min(docs.len() - 1);
        for mut fresh in sinks(window) {
            let (mut a, mut out_a) = (fresh(), Vec::new());
            for i in 0..=cut {
                step(&mut a, i, &mut out_a)?;
            }
            // A sink restored from a carry goes on exactly like the original.
            let mut b = a.reborn(&mut *fresh);
            let mut out_b = out_a.clone();
            for i in cut + 1..docs.len() {
                step(&mut a, i, &mut out_a)?;
                step(&mut b, i, &mut out_b)?;
            }
            prop_assert_eq!(&out_a, &out_b);
            let (la, lb) = (a.finish_all(7, rows), b.finish_all(7, rows));
            prop_assert_eq!(la, lb);
            prop_assert_eq!(a.buffered(), 0);
        }
    }
}

#[test]
fn clear_reports_what_it_dropped() {
    for mut fresh in sinks(4) {
        let mut sink = fresh();
        sink.push(&[1, 2, 3], Some(9));
        sink.push(&[4], None);
        assert_eq!(sink.buffered(), 5);
        let dropped = match &mut sink {
            AnySink::Rows(s) => RowSink::clear(s),
            AnySink::Pack(s) => RowSink::clear(s),
        };
        assert_eq!((dropped, sink.buffered()), (5, 0));
        assert!(sink.finish_all(4, 8).is_empty());
    }
}

#[test]
fn carries_that_contradict_themselves_are_refused() {
    let invalid = |e: BatchError| matches!(e, BatchError::InvalidCarry { .. });
    let packer = |carry: serde_json::Value| {
        let strategy = PackStrategy::BestFitDecreasing { window: 4 };
        let mut sink = PackerConfig::default().with_strategy(strategy).build();
        RowSink::restore(&mut sink, &serde_json::from_value(carry).unwrap()).unwrap_err()
    };
    let piece = |n: usize| serde_json::json!({"tokens": vec![1; n], "split": false});
    // A ready row longer than the rows it was packed for.
    assert!(invalid(packer(serde_json::json!({
        "dtype": "i64", "pending": [], "ready": [[piece(3), piece(3)]], "ready_len": 4
    }))));
    // Pieces without a dtype; an empty piece.
    assert!(invalid(packer(serde_json::json!({
        "dtype": null, "pending": [piece(2)], "ready": [], "ready_len": 0
    }))));
    assert!(invalid(packer(serde_json::json!({
        "dtype": "i64", "pending": [piece(0)], "ready": [], "ready_len": 0
    }))));
    let repacker = |carry: serde_json::Value| {
        let mut sink = RepackerConfig::default().build();
        RowSink::restore(&mut sink, &serde_json::from_value(carry).unwrap()).unwrap_err()
    };
    // Fields of different lengths; no input_ids.
    assert!(invalid(repacker(serde_json::json!({"fields": [
        ["input_ids", "i64", [1, 2, 3]], ["labels", "i64", [1, 2]]
    ]}))));
    assert!(invalid(repacker(
        serde_json::json!({"fields": [["labels", "i64", [1, 2]]]})
    )));
}
