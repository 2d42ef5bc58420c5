//! Batch planning: rows grouped by length under a token budget (pure, unit-tested).

/// Groups item indices into batches of similar length: sorted by length (longest first, ties
/// by index, so plans are deterministic), each batch keeping `rows * longest <= budget` tokens
/// (a single longer item gets a batch of its own) and at most `max_rows` rows.
pub fn plan_batches(lengths: &[usize], budget: usize, max_rows: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut batches = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut width = 0;
    for i in order {
        let w = width.max(lengths[i]);
        if !cur.is_empty() && ((cur.len() + 1) * w > budget || cur.len() >= max_rows.max(1)) {
            batches.push(std::mem::take(&mut cur));
            width = 0;
        }
        width = width.max(lengths[i]);
        cur.push(i);
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_budget_and_cover_every_item_once() {
        let lengths = [10, 3, 7, 10, 2, 30];
        let plan = plan_batches(&lengths, 24, 8);
        assert_eq!(plan, vec![vec![5], vec![0, 3], vec![2, 1, 4]]);
        for b in &plan {
            let w = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(b.len() == 1 || b.len() * w <= 24);
        }
        let mut all: Vec<usize> = plan.concat();
        all.sort();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
        assert_eq!(plan_batches(&[1, 1, 1], 100, 2).len(), 2, "row cap");
        assert!(plan_batches(&[], 10, 2).is_empty());
    }
}
