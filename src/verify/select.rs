//! Choosing the objects to verify: every done object, read from the checkpoint a page at
//! a time, or a seeded random sample of them, held whole.

use crate::store::{Checkpoint, StoreError, VerifyItem};
use std::collections::VecDeque;

/// Done rows read from the checkpoint at a time.
const PAGE_ROWS: usize = 1000;

/// Where the objects to check come from.
#[derive(Debug)]
pub enum Selection {
    Sample(VecDeque<VerifyItem>),
    Pages { after: i64, buf: VecDeque<VerifyItem>, end: bool },
}

impl Selection {
    /// Every done object, in plan order.
    pub fn all() -> Selection {
        Selection::Pages { after: 0, buf: VecDeque::new(), end: false }
    }

    /// `n` done objects picked at random: the same seed on the same checkpoint picks the
    /// same objects.
    pub fn sample(cp: &Checkpoint, n: u64, seed: u64) -> Result<Selection, StoreError> {
        Ok(Selection::Sample(cp.done_sample(n, seed)?.into()))
    }

    /// The sample's size (None for pages: all done objects).
    pub fn sample_len(&self) -> Option<u64> {
        match self {
            Selection::Sample(items) => Some(items.len() as u64),
            Selection::Pages { .. } => None,
        }
    }

    pub fn next(&mut self, cp: &Checkpoint) -> Result<Option<VerifyItem>, StoreError> {
        match self {
            Selection::Sample(items) => Ok(items.pop_front()),
            Selection::Pages { after, buf, end } => {
                if buf.is_empty() && !*end {
                    let page = cp.done_page(*after, PAGE_ROWS)?;
                    *end = page.len() < PAGE_ROWS;
                    if let Some(last) = page.last() {
                        *after = last.id;
                    }
                    buf.extend(page);
                }
                Ok(buf.pop_front())
            }
        }
    }
}
