//! The loop both verify passes run (the verdicts, [`super::pass`], and the deletion of
//! replaced versions, [`super::replaced`]): take items from a source, at most
//! `concurrency` of them in flight, hand each result on in the order they finish, and end
//! early when the stop signal (Ctrl-C) comes.

use super::pass::VerifyError;
use std::future::Future;

/// Run `work` on every item `next` yields, at most `concurrency` at once, and give each
/// result to `done` as it finishes. Ends when `next` is exhausted and every item is done,
/// or when `stop` completes first (then returns true: interrupted, the items in flight
/// abandoned). An error from `next` or `done` ends it with that error.
pub(super) async fn run_bounded<I, T, Fut>(
    concurrency: usize,
    mut next: impl FnMut() -> Result<Option<I>, VerifyError>,
    work: impl Fn(I) -> Fut,
    mut done: impl FnMut(T) -> Result<(), VerifyError>,
    stop: impl Future<Output = ()>,
) -> Result<bool, VerifyError>
where
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    let mut exhausted = false;
    let mut interrupted = false;
    tokio::pin!(stop);
    loop {
        while !exhausted && tasks.len() < concurrency.max(1) {
            match next()? {
                Some(item) => {
                    tasks.spawn(work(item));
                }
                None => exhausted = true,
            }
        }
        let joined = tokio::select! {
            biased;
            _ = &mut stop => {
                interrupted = true;
                break;
            }
            j = tasks.join_next() => j,
        };
        let Some(joined) = joined else { break };
        done(joined.map_err(VerifyError::Task)?)?;
    }
    tasks.abort_all();
    Ok(interrupted)
}
