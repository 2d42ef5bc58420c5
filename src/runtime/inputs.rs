//! Pure tensor preparation of the graph's token inputs: padding, attention masks and position
//! ids. No ONNX Runtime here, so every rule is unit-tested on its own.

use ndarray::Array2;

/// The three integer inputs of one graph call.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchInputs {
    pub input_ids: Array2<i64>,
    /// `[batch, past + new]`.
    pub attention_mask: Array2<i64>,
    pub position_ids: Array2<i64>,
}

/// Right-padded prefill batch (extraction): positions are `0..len` per row; padding sits after
/// the real tokens, which causal attention never lets real tokens see.
pub fn right_padded(seqs: &[&[u32]], pad_id: u32) -> BatchInputs {
    let width = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let b = seqs.len();
    let mut ids = Array2::from_elem((b, width), pad_id as i64);
    let mut mask = Array2::zeros((b, width));
    // Padding slots get valid positions too; real tokens never attend to them.
    let pos = Array2::from_shape_fn((b, width), |(_, c)| c as i64);
    for (r, s) in seqs.iter().enumerate() {
        for (c, &t) in s.iter().enumerate() {
            ids[[r, c]] = t as i64;
            mask[[r, c]] = 1;
        }
    }
    BatchInputs {
        input_ids: ids,
        attention_mask: mask,
        position_ids: pos,
    }
}

/// Left-padded prefill batch (generation): every row's last token is in the last column, so
/// decoding steps stay aligned. Positions count real tokens only (`cumsum(mask) - 1`), padded
/// slots get 1, as transformers does.
pub fn left_padded(seqs: &[&[u32]], pad_id: u32) -> BatchInputs {
    let width = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let b = seqs.len();
    let mut ids = Array2::from_elem((b, width), pad_id as i64);
    let mut mask = Array2::zeros((b, width));
    for (r, s) in seqs.iter().enumerate() {
        let off = width - s.len();
        for (c, &t) in s.iter().enumerate() {
            ids[[r, off + c]] = t as i64;
            mask[[r, off + c]] = 1;
        }
    }
    let pos = positions_from_mask(&mask, width);
    BatchInputs {
        input_ids: ids,
        attention_mask: mask,
        position_ids: pos,
    }
}

/// Position ids of the last `new` columns of `mask` (`[batch, past + new]`).
pub fn positions_from_mask(mask: &Array2<i64>, new: usize) -> Array2<i64> {
    let (b, total) = mask.dim();
    let mut pos = Array2::zeros((b, new));
    for r in 0..b {
        let mut count = 0i64;
        for c in 0..total {
            count += mask[[r, c]];
            if c + new >= total {
                pos[[r, c + new - total]] = if mask[[r, c]] == 0 { 1 } else { count - 1 };
            }
        }
    }
    pos
}

/// The inputs of one decoding step: each row gets its new token, the mask grows by a column of
/// ones, and positions continue from each row's real-token count.
pub fn decode_step(next: &[u32], mask: &Array2<i64>) -> BatchInputs {
    let (b, past) = mask.dim();
    let mut new_mask = Array2::ones((b, past + 1));
    new_mask.slice_mut(ndarray::s![.., ..past]).assign(mask);
    let mut ids = Array2::zeros((b, 1));
    let mut pos = Array2::zeros((b, 1));
    for r in 0..b {
        ids[[r, 0]] = next[r] as i64;
        pos[[r, 0]] = mask.row(r).sum();
    }
    BatchInputs {
        input_ids: ids,
        attention_mask: new_mask,
        position_ids: pos,
    }
}

/// The mask of two left-padded batches decoded as one: each is left-padded with zeros (never
/// attended) to the longer one's width and `b`'s rows follow `a`'s. Positions, which come from
/// the mask ([`positions_from_mask`], [`decode_step`]), are unchanged for every row.
pub fn join_masks(a: &Array2<i64>, b: &Array2<i64>) -> Array2<i64> {
    let width = a.ncols().max(b.ncols());
    let mut out = Array2::zeros((a.nrows() + b.nrows(), width));
    out.slice_mut(ndarray::s![..a.nrows(), width - a.ncols()..])
        .assign(a);
    out.slice_mut(ndarray::s![a.nrows().., width - b.ncols()..])
        .assign(b);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn joined_masks_left_pad_and_keep_every_rows_positions() {
        let running = decode_step(
            &[9, 10],
            &left_padded(&[&[5, 6, 7], &[8]], 0).attention_mask,
        );
        let joining = left_padded(&[&[1, 2], &[3, 4, 5, 6, 7, 8]], 0).attention_mask;
        let joined = join_masks(&running.attention_mask, &joining);
        assert_eq!(
            joined,
            array![
                [0, 0, 1, 1, 1, 1],
                [0, 0, 0, 0, 1, 1],
                [0, 0, 0, 0, 1, 1],
                [1, 1, 1, 1, 1, 1]
            ]
        );
        // The next step's positions are what each batch would have given on its own.
        let next = decode_step(&[0; 4], &joined).position_ids;
        let alone_a = decode_step(&[0; 2], &running.attention_mask).position_ids;
        let alone_b = decode_step(&[0; 2], &joining).position_ids;
        assert_eq!(
            next.column(0).to_vec(),
            [alone_a.column(0).to_vec(), alone_b.column(0).to_vec()].concat()
        );
        assert_eq!(next, array![[4], [2], [2], [6]]);
        assert_eq!(join_masks(&joining, &joining).nrows(), 4);
    }

    #[test]
    fn right_padding() {
        let b = right_padded(&[&[5, 6, 7], &[8]], 0);
        assert_eq!(b.input_ids, array![[5, 6, 7], [8, 0, 0]]);
        assert_eq!(b.attention_mask, array![[1, 1, 1], [1, 0, 0]]);
        assert_eq!(b.position_ids, array![[0, 1, 2], [0, 1, 2]]);
    }

    #[test]
    fn left_padding_positions_count_real_tokens() {
        let b = left_padded(&[&[5, 6, 7], &[8]], 0);
        assert_eq!(b.input_ids, array![[5, 6, 7], [0, 0, 8]]);
        assert_eq!(b.attention_mask, array![[1, 1, 1], [0, 0, 1]]);
        assert_eq!(b.position_ids, array![[0, 1, 2], [1, 1, 0]]);
    }

    #[test]
    fn decode_steps_continue_positions() {
        let b = left_padded(&[&[5, 6, 7], &[8]], 0);
        let s = decode_step(&[9, 10], &b.attention_mask);
        assert_eq!(s.input_ids, array![[9], [10]]);
        assert_eq!(s.attention_mask, array![[1, 1, 1, 1], [0, 0, 1, 1]]);
        assert_eq!(s.position_ids, array![[3], [1]]);
        assert_eq!(positions_from_mask(&s.attention_mask, 1), s.position_ids);
    }
}
